"""The team server in headless Chromium: sign-in, both roles, refusals, Host names, corpus links, live runs."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest

from horizonlens.bench.browser import serving, step_heading, wait_ready
from horizonlens.query.store import open_store
from horizonlens.server.users import add_user
from tests.support.browser import TIMINGS, heading, settled, shot
from tests.support.corpora import TINY_RUN
from tests.support.logs import append, line, tau_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}
VIEWPORT = {"width": 1440, "height": 1300}


@pytest.fixture()
def team(tmp_path: Path, tiny_corpus: Path) -> Path:
    for name in ("alpha", "beta"):
        shutil.copytree(tiny_corpus, tmp_path / "corpora" / name)
    for name, role in (("alice", "editor"), ("bob", "viewer")):
        add_user(tmp_path / "users.toml", name, role, PASSWORDS[name])
    return tmp_path


def _corpus_strings(corpus: Path, shown: str) -> tuple[str, list[str]]:
    """The task of the trajectory `shown`, and text only the corpus holds (ids, agents, tasks): none may leak."""
    t = pq.read_table(corpus / "trajectories").to_pydict()
    task = t["task"][t["trajectory_id"].index(shown)][:40]
    ids = [i for i in t["trajectory_id"] if i != shown]  # the URL names `shown` itself
    return task, sorted({task, *ids[:20], *t["agent"], *(task[:40] for task in t["task"][:20])})


def _metric(page, label: str, value: str):  # noqa: ANN001, ANN202 - Playwright page and locator
    """A metric showing `value` under `label` (appears once the page shows it)."""
    return page.locator("[data-testid=stMetric]").filter(has_text=label).filter(
        has=page.get_by_text(value, exact=True)).first


def _sign_in(page, name: str, password: str | None = None) -> None:  # noqa: ANN001 - a Playwright page
    page.get_by_role("textbox", name="User").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS.get(name, "") if password is None else password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_roles_and_refusals(browser, team: Path) -> None:
    alpha = team / "corpora" / "alpha"
    tid = TINY_RUN
    task, secrets = _corpus_strings(alpha, shown=tid)
    with serving(team / "corpora", args=["--auth", str(team / "users.toml")]) as app:
        page = browser.new_page(viewport=VIEWPORT)
        frames: list[bytes] = []
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda f: frames.append(f if isinstance(f, bytes) else f.encode())))
        page.goto(f"{app.url}/trajectory?corpus=alpha&trajectory={tid}&step=1")
        settled(page, page.get_by_role("button", name="Sign in"))
        received = b"".join(frames).decode("utf-8", errors="replace") + page.content()
        assert len(frames) > 3  # the session is up and talking: it just sends no corpus data
        for text in secrets:
            assert text not in received, text
        shot(page, "server-01-sign-in")

        _sign_in(page, "bob", "not bob's password")
        settled(page, page.get_by_text("Sign-in failed: unknown user or wrong password."))
        shot(page, "server-02-refused")

        _sign_in(page, "bob")
        settled(page, step_heading(page, 1))  # the deep link survived the sign-in
        body = page.inner_text("body")
        assert "Signed in as bob" in body and "viewer" in body
        assert "Adding, editing and exporting labels needs an editor" in body
        assert not page.get_by_role("link", name="Import").count()
        assert not page.get_by_role("textbox", name="Open a corpus folder").count()
        received = b"".join(frames).decode("utf-8", errors="replace")
        assert task in received  # now the corpus flows (so the check above can fail)
        page.get_by_role("link", name="SQL").click()
        settled(page, heading(page, "SQL"))
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text(" rows", exact=False).first.wait_for(timeout=120_000)
        assert "corpus=alpha" in page.url
        shot(page, "server-03-viewer")
        page.goto(f"{app.url}/import?corpus=alpha")  # a new session: the viewer signs in again
        settled(page, page.get_by_role("button", name="Sign in"))
        _sign_in(page, "bob")
        wait_ready(page)
        settled(page, page.get_by_text("Signed in as").first)
        assert not page.get_by_text("Import trajectories").count()  # the page is not there for a viewer
        page.close()

        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{app.url}/trajectory?corpus=beta&trajectory={tid}&step=2")
        settled(page, page.get_by_role("button", name="Sign in"))
        _sign_in(page, "alice")
        settled(page, step_heading(page, 2))
        assert page.get_by_role("link", name="Import").count() == 1
        assert page.get_by_role("textbox", name="Open a corpus folder").count() == 1
        page.get_by_role("tab", name="Add a label").click()
        page.get_by_role("textbox", name="Label").fill("wrong flight")
        page.get_by_role("button", name="Add label").click()
        settled(page, page.get_by_text("Label added to step 2."))
        shot(page, "server-04-editor")
        page.close()
    store = open_store(team / "corpora" / "beta")
    assert store.query("SELECT label, author FROM annotations").to_pylist() == [
        {"label": "wrong flight", "author": "alice"}]


def _raw(url: str, host: str, path: str, upgrade: bool) -> str:
    """The status line and headers a server answers to one raw request with this Host header."""
    port = urlsplit(url).port
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        request += (f"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nOrigin: http://{host}\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall((request + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode("latin-1")


def test_foreign_host_names_are_refused(browser, tiny_corpus: Path) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example. Nothing answers it."""
    with serving(tiny_corpus) as app:
        port = urlsplit(app.url).port
        for path, upgrade in (("/", False), ("/_stcore/health", False), ("/_stcore/stream", True)):
            for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil"):
                answer = _raw(app.url, host, path, upgrade)
                assert answer.startswith("HTTP/1.1 400"), (host, path, answer[:200])
        assert _raw(app.url, f"127.0.0.1:{port}", "/_stcore/stream", True).startswith("HTTP/1.1 101")
        assert _raw(app.url, f"localhost:{port}", "/_stcore/health", False).startswith("HTTP/1.1 200")
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(app.url.replace("127.0.0.1", "localhost"))  # the names it serves still work in a browser
        settled(page, page.get_by_text("Trajectories", exact=True).first)
        page.close()


def test_an_imported_corpus_run_link_survives_reload(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpora" / "alpha"))
    logs = tmp_path / "runs.jsonl"
    logs.write_bytes(b"".join(line(tau_run(t, words=f"fly to city {t}")) for t in (11, 12, 13)))
    with serving(corpus) as app:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{app.url}/import")
        settled(page, page.locator("[data-testid=stFileUploaderDropzone]").first)
        page.locator("input[type=file]").set_input_files(str(logs))
        page.get_by_text("runs.jsonl").first.wait_for(timeout=30_000)
        target = page.locator("input[aria-label='Into corpus']")
        target.fill("imported")
        target.press("Enter")
        wait_ready(page)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("3 trajectories added", exact=False).first.wait_for(timeout=120_000)
        page.get_by_role("link", name=re.compile("Browse imported")).click()
        settled(page, _metric(page, "Trajectories", "3"))  # the imported corpus, not the one served first
        assert parse_qs(urlsplit(page.url).query)["corpus"] == ["imported"]
        page.goto(f"{app.url}/trajectory?corpus=imported&trajectory=tau-bench:12:0&step=2")
        settled(page, step_heading(page, 2))
        page.get_by_role("button", name="Next ▶").click()
        settled(page, step_heading(page, 3))
        link = page.url
        assert {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()} == {
            "corpus": "imported", "trajectory": "tau-bench:12:0", "step": "3"}
        page.reload()
        settled(page, step_heading(page, 3))
        assert "fly to city 12" in page.inner_text("body")
        shot(page, "server-05-imported-run-reloaded")
        other = browser.new_page(viewport=VIEWPORT)  # the shared link, in another session
        other.goto(link)
        settled(other, step_heading(other, 3))
        assert "fly to city 12" in other.inner_text("body")
        other.get_by_role("link", name="Explore").click()  # the corpus stays in the URL from page to page
        settled(other, _metric(other, "Trajectories", "3"))
        assert "corpus=imported" in other.url
        other.close()
        page.close()


def test_runs_written_while_the_server_runs_appear(browser, tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    watched = tmp_path / "live"
    watched.mkdir()
    log = watched / "runs.jsonl"
    append(log, line(tau_run(0)))
    with serving(corpus, args=["--watch", str(watched)]) as app:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(app.url)
        settled(page, page.get_by_text("Watching live", exact=False).first)
        base = pq.read_table(tiny_corpus / "trajectories").num_rows
        latencies: list[float] = []
        done = threading.Event()

        def writer() -> None:
            """A harness writing runs as they finish, each line in two pieces."""
            for task in range(1, 6):
                data = line(tau_run(task))
                append(log, data[:30])
                append(log, data[30:])
                written = time.monotonic()
                while not done.is_set():
                    ids = open_store(corpus).query("SELECT trajectory_id FROM trajectories WHERE trajectory_id = ?",
                                                   [f"tau-bench:{task}:0"])
                    if ids.num_rows:
                        latencies.append(time.monotonic() - written)
                        break
                    done.wait(0.1)  # polling the corpus, not waiting a fixed time

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            settled(page, page.get_by_text("new runs arrived", exact=False).first, timeout_ms=180_000)
            shot(page, "server-06-new-runs")
            thread.join(timeout=300)
        finally:
            done.set()
            thread.join()
        assert len(latencies) == 5
        page.get_by_role("button", name="Show them").click()
        settled(page, _metric(page, "Trajectories", f"{base + 6:,}"))  # the sample's runs and the 6 written
        TIMINGS["watch_latency_max_s"] = round(max(latencies), 2)
        TIMINGS["watch_latency_median_s"] = round(sorted(latencies)[2], 2)
        page.close()
    ids = open_store(corpus).query("SELECT trajectory_id FROM trajectories WHERE source = 'tau-bench'")
    assert sorted(ids.column(0).to_pylist()) == [f"tau-bench:{t}:0" for t in range(6)]
