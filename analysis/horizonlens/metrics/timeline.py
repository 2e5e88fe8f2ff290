"""One trajectory's error timeline: check per step, cumulative failures, recoveries, decisive step."""

from __future__ import annotations

from typing import Any

import pandas as pd

from horizonlens.query.store import CorpusStore


def error_timeline(store: CorpusStore, trajectory_id: str) -> pd.DataFrame:
    """Per step: check (passed/failed/none), cumulative failed checks, first failure, recovery, decisive.

    A failed check is *recovered* when the next checked call of the same tool passes; `status` is
    what the timeline strip colours by.
    """
    df = store.check_strip(trajectory_id).to_pandas()
    if df.empty:
        return df
    df["tool"] = [t[0] if t is not None and len(t) else None for t in df["tools"]]
    df["status"] = df["check_passed"].map({True: "passed", False: "failed"}).fillna("no check")
    df["failed"] = (df["check_passed"] == False).astype(int)  # noqa: E712 - pandas element-wise
    df["cumulative_failed"] = df["failed"].cumsum()
    failed_steps = df.index[df["failed"] == 1]
    df["first_failed"] = False
    if len(failed_steps):
        df.loc[failed_steps[0], "first_failed"] = True
    df["recovered"] = False
    checked = df[df["check_passed"].notna()]
    for i in failed_steps:
        # recovered: the next checked call of the same tool passes
        same = checked[(checked.index > i) & (checked["tool"] == df.at[i, "tool"])]
        df.at[i, "recovered"] = bool(len(same)) and bool(same["check_passed"].iloc[0])
    df["decisive"] = df["is_decisive_error"].eq(True)
    return df[["step", "source", "tool", "status", "check_passed", "error_label", "failed", "cumulative_failed",
               "first_failed", "recovered", "decisive"]]


def failed_steps(store: CorpusStore, trajectory_id: str) -> list[int]:
    """The steps of one trajectory whose check failed, in order: what the pages mark and step through."""
    strip = store.check_strip(trajectory_id)
    return [step for step, passed in zip(strip.column("step").to_pylist(), strip.column("check_passed").to_pylist(),
                                         strict=True) if passed is False]


def timeline_summary(timeline: pd.DataFrame) -> dict[str, Any]:
    """Headline counts of one trajectory's timeline: checks, failed, recovered, first failed and decisive step."""
    if timeline.empty:
        return {"checks": 0, "failed": 0, "recovered": 0, "first_failed_step": None, "decisive_step": None}
    failed = timeline[timeline["failed"] == 1]
    decisive = timeline.loc[timeline["decisive"], "step"]
    return {"checks": int((timeline["status"] != "no check").sum()), "failed": int(len(failed)),
            "recovered": int(timeline["recovered"].sum()),
            "first_failed_step": int(failed["step"].iloc[0]) if len(failed) else None,
            "decisive_step": int(decisive.iloc[0]) if len(decisive) else None}
