""""What would the model do here?": the model's own action and the recorded one, kept apart part by part."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from horizonlens.app import ui

if TYPE_CHECKING:
    from horizonlens.model.render import ActionParts
    from horizonlens.model.replay import Continuation


def show(result: Continuation, key: str) -> None:
    """The model's action (generated now), then the recorded one, each in its own box, part by part."""
    with st.container(border=True):
        st.markdown(":material/smart_toy: **The model's own action** (generated now)")
        _parts(result.generated_parts, f"{key}_gen", empty="The model wrote nothing before ending its turn.")
    with st.container(border=True):
        st.markdown(":material/history: **The recorded action** (from the trajectory)")
        _parts(result.recorded_parts, f"{key}_rec", empty="The recorded step has no agent-written content.")


def _parts(parts: ActionParts, key: str, empty: str) -> None:
    if not (parts.reasoning or parts.message or parts.tool_calls):
        st.caption(empty)
        return
    ui.untrusted("Reasoning", parts.reasoning, key=f"{key}_r")
    ui.untrusted("Message", parts.message, key=f"{key}_m")
    for i, call in enumerate(parts.tool_calls):
        text, lang = ui.pretty_arguments(call)
        ui.untrusted("Tool call" if len(parts.tool_calls) == 1 else f"Tool call {i + 1}", text or "(empty)",
                     key=f"{key}_c{i}", language=lang)
