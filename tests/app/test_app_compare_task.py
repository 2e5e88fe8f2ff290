"""Compare: the trials caption follows A as typed, and runs of different tasks are said to be so."""

from __future__ import annotations

from pathlib import Path

from horizonlens.query import open_store
from tests.support.app import make_app, shown


def test_caption_follows_a_and_different_tasks_are_flagged(monkeypatch, tiny_corpus: Path) -> None:
    store = open_store(tiny_corpus)
    tasks = store.query("SELECT task_id, list(trajectory_id ORDER BY trial) AS ids FROM trajectories "
                        "GROUP BY task_id ORDER BY task_id LIMIT 2").to_pylist()
    first, other = tasks
    at = make_app(monkeypatch, tiny_corpus, page="compare", trajectory=first["ids"][0])
    at.run()
    assert not at.exception, at.exception
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(f"Trials of A's task {first['task_id']}: ") for c in captions)
    assert not at.warning or all("not runs of the same task" not in w.value for w in at.warning)  # two trials

    at.text_input(key="cmp_a").set_value(other["ids"][0]).run()  # A is now a run of another task
    assert not at.exception, at.exception
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(f"Trials of A's task {other['task_id']}: " + ", ".join(other["ids"])) for c in captions)
    assert not any(first["task_id"] in c for c in captions if c.startswith("Trials"))
    warning = next(shown(w.value) for w in at.warning if "not runs of the same task" in w.value)
    assert f"({other['task_id']} and {first['task_id']})" in warning
