"""Streamlit AppTest for every page: loads without exception, and the key widgets drive the expected change."""

from __future__ import annotations

import csv
import html
import io
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.app import AUTOLINKS, assert_inert, make_app, page_markdown, rendered_markdown, shown
from tests.support.corpora import BARE_URLS, HOSTILE, MARKDOWN_IMAGE, TOOL_IMAGE


def _first_failed(corpus: Path) -> str:
    import pyarrow.parquet as pq

    trajs = pq.read_table(corpus / "trajectories").to_pylist()
    return next(t["trajectory_id"] for t in trajs if t["n_failed_checks"] > 0 and t["n_steps"] > 12)


def test_explore_filters_and_paging(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Explore"
    assert "**48** trajectories" in page_markdown(at)
    at.multiselect(key="explore_domains").select("search").run()
    assert "**8** trajectories" in page_markdown(at)
    at.text_input(key="explore_text").set_value("no such text anywhere").run()
    assert any("No trajectory matches" in i.value for i in at.info)
    at.text_input(key="explore_text").set_value("").run()
    at.multiselect(key="explore_domains").unselect("search").run()
    assert "page 1 of 1" in page_markdown(at) and at.button(key="explore_next").disabled  # 48 rows fit one page
    from horizonlens.query import TrajectoryFilter, open_store

    store = open_store(tiny_corpus)
    tool = at.selectbox(key="explore_tool").options[1]
    at.selectbox(key="explore_tool").select(tool).run()
    expected = store.list_trajectories(TrajectoryFilter(tool=tool), limit=50)
    assert f"**{expected.total}** trajectories" in page_markdown(at)
    shown = at.dataframe[0].value["trajectory_id"].tolist()
    assert sorted(shown) == sorted(expected.rows["trajectory_id"].to_pylist())
    groups = store.by_group("domain").to_pandas()
    assert groups["trajectories"].sum() == 48 and set(groups["domain"]) == set(store.distinct("domain"))


def test_bad_corpus_path_shows_error(monkeypatch, tiny_corpus: Path, tmp_path: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus)
    at.run()
    at.sidebar.text_input(key="sidebar_corpus_input").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("not a directory" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="sidebar_ckpt_input").set_value(str(tmp_path)).run()
    assert any("config.json" in shown(e.value) for e in at.sidebar.error)


def test_trajectory_navigation(monkeypatch, tiny_corpus: Path) -> None:
    tid = _first_failed(tiny_corpus)
    at = make_app(monkeypatch, tiny_corpus, page="trajectory", trajectory=tid, step="3")
    at.run()
    assert not at.exception, at.exception
    assert "Step 3" in page_markdown(at)
    at.button(key="traj_next").click().run()
    assert "Step 4" in page_markdown(at) and at.query_params["step"] == "4"
    at.button(key="traj_first_fail").click().run()
    first = int(at.query_params["step"])
    assert "check failed" in page_markdown(at) and first > 0
    at.button(key="traj_prev").click().run()
    assert at.query_params["step"] == str(first - 1)
    at.text_input(key="traj_find").set_value("reference execution").run()
    assert not at.exception


def test_trajectory_empty_and_unknown(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus, page="trajectory")
    at.run()
    assert any("Explore" in i.value for i in at.info)
    at = make_app(monkeypatch, tiny_corpus, page="trajectory", trajectory="nope")
    at.run()
    assert any("No trajectory with id 'nope'" in shown(e.value) for e in at.error)


@pytest.mark.parametrize(("step", "says"), [
    ("²", "is not a step number"), ("٣", "is not a step number"), ("-1", "is not a step number"),
    ("1e3", "is not a step number"), (" 2", "is not a step number"), ("9" * 400, "is not a step number"),
    ("999999999", "past the last step"), ("", "is not a step number")])
def test_a_bad_step_in_the_link_gets_a_message(monkeypatch, tiny_corpus: Path, step: str, says: str) -> None:
    """str.isdigit accepts '²' and int() does not: the page showed a traceback with the server's paths."""
    tid = _first_failed(tiny_corpus)
    at = make_app(monkeypatch, tiny_corpus, page="trajectory", trajectory=tid, step=step)
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(shown(w.value) for w in at.warning)
    assert says in warnings and "Step " in page_markdown(at)
    assert "/" not in warnings  # no server path in what the page says
    assert at.query_params["step"].isdigit()  # the link is corrected to the step shown


@pytest.mark.parametrize(("tid", "says"), [("x" * 5000, "longer than"), ("a\x00b", "control characters"),
                                            ("a\nb", "control characters")])
def test_a_bad_trajectory_in_the_link_gets_a_message(monkeypatch, tiny_corpus: Path, tid: str, says: str) -> None:
    at = make_app(monkeypatch, tiny_corpus, page="trajectory", trajectory=tid, step="1")
    at.run()
    assert not at.exception, at.exception
    assert any(says in shown(w.value) for w in at.warning), [w.value for w in at.warning]
    assert any("Explore" in i.value for i in at.info)  # the page carries on as without a link


def test_hostile_content_is_shown_as_text(monkeypatch, hostile_corpus: Path) -> None:
    at = make_app(monkeypatch, hostile_corpus, page="trajectory", trajectory="evil-t0", step="1")
    at.run()
    assert not at.exception
    codes = [c.value for c in at.code]
    assert any(HOSTILE in c for c in codes)  # literally, inside code blocks
    assert "<script>" not in page_markdown(at)  # never in markdown that could be interpreted
    assert "![pwn]" not in page_markdown(at) and r"\!\[pwn\]" in page_markdown(at)  # agent name: escaped markdown
    assert_inert(rendered_markdown(at))
    labels = page_markdown(at)
    assert r"Tool call · \!\[tool\]" in labels  # the tool's name in its label: literal
    at.query_params["step"] = "2"
    at.run()
    captions = " ".join(c.value for c in at.caption)
    assert "![pwn]" not in captions and r"\!\[pwn\]" in captions  # check detail: escaped too
    assert_inert(rendered_markdown(at))


@pytest.mark.parametrize("page, params", [
    ("explore", {}), ("compare", {"trajectory": "evil-t0"}), ("compounding", {}), ("trajectory", {}),
])
def test_hostile_names_inert_on_every_page(monkeypatch, hostile_corpus: Path, page: str,
                                           params: dict[str, str]) -> None:
    at = make_app(monkeypatch, hostile_corpus, page=page, **params)
    at.run()
    assert not at.exception, at.exception
    assert_inert(rendered_markdown(at))
    if page == "compounding":
        at.selectbox(key="comp_facet").select("agent").run()
        assert not at.exception
        assert_inert(rendered_markdown(at))
        for tab in ["Compounding signature", "Success vs length", "Decisive step", "Early warning"]:
            at.session_state["comp_tab"] = tab  # only the open tab runs
            at.run()
            assert not at.exception, (tab, at.exception)
            assert_inert(rendered_markdown(at))


def test_sql_error_with_hostile_text_is_inert(monkeypatch, hostile_corpus: Path) -> None:
    at = make_app(monkeypatch, hostile_corpus, page="sql")
    at.run()
    at.selectbox(key="sql_example").select("(write your own)").run()
    next(t for t in at.text_area).set_value(f'SELECT * FROM "{MARKDOWN_IMAGE} {BARE_URLS}"').run()
    at.button(key="sql_run").click().run()
    assert not at.exception and at.error
    assert_inert(rendered_markdown(at))


def _md_shows_exactly(text: str) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    from horizonlens.app.ui import md

    html_out = markdown_it.MarkdownIt("commonmark").render(md(text))
    inner = html_out.strip().removeprefix("<p>").removesuffix("</p>")
    assert "<" not in inner, html_out  # one paragraph of text: no element of any kind
    shown = html.unescape(inner).replace("\u2060", "")
    assert shown.strip() == re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text).strip()
    assert not AUTOLINKS.search(html.unescape(inner))


@pytest.mark.parametrize("text", [MARKDOWN_IMAGE, TOOL_IMAGE, BARE_URLS, HOSTILE, "**bold** _it_ `code` # h",
                                  "$x^2$ :red[alert] :material/home: [^1] | a | b |", "a\nb\r\n# heading", "&lt;b&gt;",
                                  "    indented", "1. item", "<http://planted.invalid/auto>"])
def test_md_renders_as_the_text_typed(text: str) -> None:
    """A CommonMark renderer turns md(text) into one paragraph of exactly the text (no element, no entity)."""
    _md_shows_exactly(text)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=200))
def test_md_renders_any_text_as_typed(text: str) -> None:
    _md_shows_exactly(text)


def test_md_cuts_long_text() -> None:
    from horizonlens.app.ui import md

    assert md("x" * 10_000, limit=100) == "x" * 100 + "…"


def test_compounding_page(monkeypatch, tiny_corpus: Path) -> None:
    from horizonlens.metrics import compounding
    from horizonlens.query import TrajectoryFilter, open_store

    TABS = ["Horizons", "Compounding signature", "Success vs length", "Decisive step", "Early warning"]
    store = open_store(tiny_corpus)
    at = make_app(monkeypatch, tiny_corpus, page="compounding")
    at.run()
    assert not at.exception, at.exception
    cols = ["group", "checks", "failures", "rate"]

    def shown_equals(by, flt) -> None:
        shown = at.dataframe[0].value[cols].reset_index(drop=True)
        expected = compounding.step_error_rate(store, by, flt)[cols].reset_index(drop=True)
        assert shown.equals(expected), (shown, expected)

    shown_equals(None, TrajectoryFilter())
    at.selectbox(key="comp_facet").select("domain").run()
    assert not at.exception
    shown_equals("domain", TrajectoryFilter())
    agent = at.multiselect(key="comp_agents").options[0]
    at.multiselect(key="comp_agents").select(agent).run()
    assert not at.exception
    shown_equals("domain", TrajectoryFilter(agents=[agent]))
    drawn = set()
    for tab in TABS:  # only the open tab runs: open each in turn
        at.session_state["comp_tab"] = tab
        at.run()
        assert not at.exception, (tab, at.exception)
        drawn |= {c.proto.id for c in at.get("plotly_chart")}
    assert len(drawn) >= 7  # every figure drew


def test_compare_page(monkeypatch, tiny_corpus: Path) -> None:
    from horizonlens.query.store import open_store

    tid = _first_failed(tiny_corpus)
    at = make_app(monkeypatch, tiny_corpus, page="compare", trajectory=tid)
    at.run()
    assert not at.exception, at.exception
    store = open_store(tiny_corpus)
    other = store.trajectory(at.text_input(key="cmp_b").value)
    assert other["task_id"] == store.trajectory(tid)["task_id"]  # another run of the same task
    assert any("diverge" in w.value for w in at.warning) or any("same actions" in s.value for s in at.success)


def test_sql_page(monkeypatch, tiny_corpus: Path) -> None:
    from horizonlens.query import EXAMPLES, open_store, run_sql

    at = make_app(monkeypatch, tiny_corpus, page="sql")
    at.run()
    # every view the store has is listed with its columns, replay and label views too (empty here, but there)
    store = open_store(tiny_corpus)
    views = at.dataframe[0].value
    assert list(views["view"]) == [v.name for v in store.views()]
    assert {"routing_steps", "routing_rollout", "rollout_compare_steps", "annotations"} <= set(views["view"])
    steps = views.set_index("view").loc["routing_steps", "columns"]
    assert steps.startswith("trajectory_id VARCHAR, step INTEGER, layer SMALLINT, expert INTEGER")
    assert all(f"`{v.name}`" in at.caption[0].value for v in store.views())
    at.button(key="sql_run").click().run()
    assert not at.exception and len(at.dataframe) == 2
    expected = run_sql(store, EXAMPLES["Failure rate by domain"]).table.to_pandas()
    assert at.dataframe[1].value.reset_index(drop=True).equals(expected)
    at.selectbox(key="sql_example").select("(write your own)").run()
    area = next(t for t in at.text_area)
    area.set_value("COPY steps TO 'x.csv'").run()
    at.button(key="sql_run").click().run()
    assert any("only SELECT" in e.value for e in at.error)


def test_sql_csv_download_is_safe_to_open(monkeypatch, tiny_corpus: Path) -> None:
    """The SQL page's CSV download: a text cell that starts a formula gets a leading quote (storage.csv_cells)."""
    from horizonlens.app import ui

    made: list[bytes] = []
    real = ui.csv_bytes
    monkeypatch.setattr(ui, "csv_bytes", lambda data: made.append(real(data)) or made[-1])
    at = make_app(monkeypatch, tiny_corpus, page="sql")
    at.run()
    at.selectbox(key="sql_example").select("(write your own)").run()
    next(t for t in at.text_area).set_value("SELECT '=HYPERLINK(\"http://x.invalid\")' AS cell, -1 AS n").run()
    at.button(key="sql_run").click().run()
    assert not at.exception and made
    assert list(csv.reader(io.StringIO(made[-1].decode())))[1] == ["'=HYPERLINK(\"http://x.invalid\")", "-1"]


def test_routing_page_without_replays(monkeypatch, tiny_corpus: Path) -> None:
    at = make_app(monkeypatch, tiny_corpus, page="routing")
    at.run()
    assert not at.exception
    assert any("Nothing has been replayed" in i.value for i in at.info)


@pytest.mark.model
def test_replay_from_the_trajectory_page_then_routing(monkeypatch, tiny_corpus: Path, tmp_path: Path,
                                                      tiny_checkpoint: Path) -> None:
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    tid = _first_failed(corpus)
    at = make_app(monkeypatch, corpus, tiny_checkpoint, page="trajectory", trajectory=tid, step="4")
    at.run()
    assert not at.exception, at.exception
    assert any("has not been replayed" in i.value for i in at.info)
    at.button(key=f"replay_{tid}").click().run(timeout=300)
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "Surprisal (nats)" in labels and "Router entropy" in labels
    assert not at.get("number_input")  # "What would the model do here?" sends its widgets only once opened
    at.session_state["wwd_open"] = True
    at.run()
    at.button(key=f"wwd_{tid}_4_go").click().run(timeout=300)
    assert not at.exception and any("The recorded action" in m.value for m in at.markdown)
    routing = make_app(monkeypatch, corpus, tiny_checkpoint, page="routing", trajectory=tid)
    routing.run()
    assert not routing.exception, routing.exception
    assert routing.selectbox(key="routing_traj").value == tid


def test_import_page(monkeypatch, tmp_path: Path) -> None:
    import json

    from tests.support.corpora import TAU

    at = make_app(monkeypatch, tmp_path / "new", page="import_data")
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="import_go").disabled  # nothing uploaded yet
    # AppTest cannot drive a file upload; the import itself is what the page calls:
    from horizonlens.ingest import import_paths

    src = tmp_path / "tau.json"
    src.write_text(json.dumps([TAU]))
    assert import_paths([src], tmp_path / "new").added == 1
    at = make_app(monkeypatch, tmp_path / "new")
    at.run()
    assert "**1** trajectories" in page_markdown(at)


def test_huge_content_renders_without_freezing(monkeypatch, tmp_path: Path) -> None:
    """A 5 MB observation and a 2,000-step trajectory: the page stays responsive (cut fields, one step shown)."""
    import time

    from tests.support.corpora import make_corpus, step_row, traj_row

    big = ("x" * 99 + "\n") * 50_000  # 5 MB
    steps = [step_row("huge-t0", i, check=i % 7 != 0, message=f"step {i}",
                      observations=[{"call_id": None, "content": big if i == 3 else f"out {i}"}])
             for i in range(2000)]
    corpus = make_corpus(tmp_path / "huge", [traj_row("huge-t0", 2000)], steps)
    at = make_app(monkeypatch, corpus, page="trajectory", trajectory="huge-t0", step="3")
    started = time.perf_counter()
    at.run(timeout=120)
    elapsed = time.perf_counter() - started
    assert not at.exception, at.exception
    assert elapsed < 30, elapsed
    shown = max(len(c.value) for c in at.code)
    assert shown <= 200_000  # the page never holds the whole 5 MB field
    assert any("5.0 MB" in e.label or "4.8 MB" in e.label for e in at.expander)
    at.button(key="traj_next").click().run(timeout=120)
    assert "Step 4" in page_markdown(at)
