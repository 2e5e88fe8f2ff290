"""A page's link (`?trajectory=…&step=…`) read strictly: a bad value gets a message and is dropped, never a traceback.

Anyone can send a link, so its values are untrusted text: `str.isdigit` accepts '²' where `int` does not, an id
can carry control characters or a megabyte. Every page that reads the link reads it here.
"""

from __future__ import annotations

import re

import streamlit as st

from horizonlens.app.ui import md

MAX_ID_CHARS = 1_000  # the longest trajectory id the importers write
MAX_STEP_DIGITS = 10  # more than any run's step count
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_trajectory(text: str) -> str:
    """A trajectory id from a link; ValueError says why it is not one."""
    if not text.strip():
        raise ValueError("it is empty")
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"it is longer than {MAX_ID_CHARS:,} characters")
    if _CONTROL.search(text):
        raise ValueError("it holds control characters")
    return text


def parse_step(text: str, n_steps: int) -> int:
    """A step number from a link, 0 to n_steps - 1; ValueError says why it is not one."""
    if not (0 < len(text) <= MAX_STEP_DIGITS and text.isascii() and text.isdigit()):
        raise ValueError(f"{text[:20]!r} is not a step number (0 to {max(0, n_steps - 1):,})")
    step = int(text)
    if step >= n_steps:
        raise ValueError(f"step {step:,} is past the last step of this run ({max(0, n_steps - 1):,})")
    return step


def trajectory_param() -> str | None:
    """The link's trajectory id, or None (a bad one is reported and removed from the link)."""
    raw = st.query_params.get("trajectory")
    if raw is None:
        return None
    try:
        return parse_trajectory(raw)
    except ValueError as exc:
        st.warning(f"The link's trajectory is ignored: {md(exc)}.")
        del st.query_params["trajectory"]
        return None


def step_param(n_steps: int) -> int | None:
    """The link's step on a run of `n_steps` steps, or None; a step past the end is the last step (said so)."""
    raw = st.query_params.get("step")
    if raw is None:
        return None
    try:
        return parse_step(raw, n_steps)
    except ValueError as exc:
        if raw.isascii() and raw.isdigit() and 0 < len(raw) <= MAX_STEP_DIGITS:
            st.warning(f"The link's {md(exc)}: showing the last step.")
            return max(0, n_steps - 1)
        st.warning(f"The link's step is ignored: {md(exc)}.")
        return None
