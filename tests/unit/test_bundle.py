"""Offline bundles: one self-contained HTML file per run, redacted, with every run text escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from horizonlens.errors import ExportError
from horizonlens.export.bundle import bundle_file_name, write_bundle
from horizonlens.export.redact import Redactor
from horizonlens.query import open_store
from horizonlens.sample.bundled import sample_corpus
from tests.support.corpora import HOSTILE, HTML_LINK
from tests.support.exports import EMAIL, SECRET_KEY, export_corpus

SCRIPT = re.compile(r"<script\b[^>]*>", re.I)


def test_bundle_holds_the_run_and_runs_only_its_own_scripts(hostile_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "evil.html"
    written = write_bundle(open_store(hostile_corpus), "evil-t0", out)
    page = out.read_text()
    assert written.path == out.absolute() and written.steps == 3 and written.bytes == len(page.encode())
    nonce = re.search(r"script-src 'nonce-([^']+)'", page).group(1)
    scripts = SCRIPT.findall(page)
    assert scripts and all(f'nonce="{nonce}"' in s for s in scripts)  # no script tag but the page's own
    assert len(scripts) == 1 + page.count("Plotly.newPlot(")  # plotly.js, then one per figure
    assert HOSTILE not in page and HTML_LINK not in page
    assert html.escape(HOSTILE) in page  # the text is there, as text
    assert "default-src 'none'" in page and "connect-src 'none'" in page
    assert "<h2>Steps</h2>" in page and 'id="step-2"' in page


def test_redaction_and_its_switch(tmp_path: Path) -> None:
    corpus = export_corpus(tmp_path / "c")
    page = write_bundle(open_store(corpus), "ok-t0", tmp_path / "a.html").path.read_text()
    assert SECRET_KEY not in page and EMAIL not in page and "[REDACTED:api-key]" in page
    plain = write_bundle(open_store(corpus), "ok-t0", tmp_path / "b.html", redactor=Redactor(defaults=False))
    assert SECRET_KEY in plain.path.read_text() and plain.redacted == {}
    mine = write_bundle(open_store(corpus), "ok-t0", tmp_path / "c.html", redactor=Redactor(["(?i)refund"]))
    assert "refund" not in mine.path.read_text().lower().replace("[redacted:pattern-1]", "")


def test_bad_input(tmp_path: Path) -> None:
    corpus = export_corpus(tmp_path / "c")
    with pytest.raises(ExportError, match="no trajectory with id 'nope'"):
        write_bundle(open_store(corpus), "nope", tmp_path / "x.html")
    with pytest.raises(ExportError, match="does not compile"):
        Redactor(["[a-"])
    with pytest.raises(ExportError, match="is a folder"):
        write_bundle(open_store(corpus), "ok-t0", tmp_path)
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".tmp-*"))
    assert bundle_file_name("tau-bench:7:2/../x") == "tau-bench_7_2_.._x.html"


def test_replayed_run_has_its_routing_views(tmp_path: Path) -> None:
    store = open_store(sample_corpus())
    tid = store.query("SELECT min(trajectory_id) FROM replay_steps").column(0)[0].as_py()
    written = write_bundle(store, tid, tmp_path / "r.html")
    page = written.path.read_text()
    assert written.replay_checkpoint and f"Routing · {written.replay_checkpoint}" in page
    assert page.count("Plotly.newPlot(") == 3  # timeline, model signals, step x expert load
    unreplayed = store.query("SELECT min(trajectory_id) FROM trajectories WHERE trajectory_id NOT IN "
                             "(SELECT trajectory_id FROM replay_steps)").column(0)[0].as_py()
    assert write_bundle(store, unreplayed, tmp_path / "u.html").replay_checkpoint is None
