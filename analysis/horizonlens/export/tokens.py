"""Counting a run's tokens the way a trainer will see them: the checkpoint's tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RunNotCounted(Exception):
    """This run's tokens cannot be counted under the chat template; the message says why.

    `unrenderable`: the template itself refused the run, so a trainer using it could not train on the run either
    (as opposed to a checkpoint that has no chat template at all).
    """

    def __init__(self, message: str, unrenderable: bool = False):
        super().__init__(message)
        self.unrenderable = unrenderable


class ChatTemplateCounter:
    """A checkpoint's tokenizer and chat template, applied to exported messages (and tool schemas)."""

    def __init__(self, checkpoint: Path | str):
        from horizonlens.model.loader import checkpoint_id, load_tokenizer

        self.path = Path(checkpoint)
        self.tokenizer = load_tokenizer(self.path)
        self.checkpoint_id = checkpoint_id(self.path)
        self.has_template = bool(getattr(self.tokenizer, "chat_template", None))

    def count(self, messages: list[dict[str, Any]], tools: list[Any] | None) -> int:
        """Tokens of the run rendered by the chat template; RunNotCounted with the reason if it cannot be."""
        if not self.has_template:
            raise RunNotCounted(f"the checkpoint {self.checkpoint_id} has no chat template, so tokens under it "
                                "cannot be counted")
        try:
            ids = self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=False)
        except Exception as exc:  # noqa: BLE001 - a template raises anything (jinja, its own raise_exception)
            raise RunNotCounted(f"the chat template cannot render this run ({type(exc).__name__}: "
                                f"{str(exc)[:200]})", unrenderable=True) from exc
        return len(ids)

    def describe(self) -> dict[str, Any]:
        """What the manifest says about the counting checkpoint."""
        return {"checkpoint": self.checkpoint_id, "chat_template": self.has_template}
