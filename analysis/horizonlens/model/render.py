r"""Rendering a trajectory into model input, keeping the map from every token to (step, segment).

The checkpoint's own chat template when it has one: segments are located in the rendered text and mapped
to tokens through the tokenizer's offsets, and content the template drops is reported in `notes`.
Otherwise, or when its chat template is the Horizon Lens one (the sample checkpoint's), the Horizon Lens
template (docs/replay.md), rendered piece by piece so the map is exact.
Agent-written segments (reasoning, message, tool_call of agent steps) are the ones scored for surprisal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

SPECIAL_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|knowledge|>", "<|end|>", "<think>",
                  "</think>", "<tool_call>", "</tool_call>"]
# The Horizon Lens template as a Jinja chat template (Qwen3-style: tools in the system turn, reasoning in <think>,
# each call a JSON object in <tool_call>), spelled with this format's own role tokens. For messages made from
# steps (`ingest.chat.steps_to_messages`) it renders exactly `trajectory_text`, the text the sample checkpoint
# was trained on; the bundled checkpoint ships it so trainers count and train on that text.
HORIZONLENS_CHAT_TEMPLATE = "".join([
    "{%- set ns = namespace(system=false) -%}",
    "{%- if tools -%}",
    "{{- '<|system|>\n' -}}",
    "{%- if messages and messages[0].role == 'system' -%}",
    "{{- messages[0].content + '\n\n' -}}{%- set ns.system = true -%}",
    "{%- endif -%}",
    "{{- '# Tools\n\nYou may call one or more functions. Their signatures, one JSON object a line, are within "
    "<tools></tools>:\n<tools>' -}}",
    "{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}",
    "{{- '\n</tools>\n\nFor each call, write a JSON object with the function name and its arguments within "
    "<tool_call></tool_call>:\n<tool_call>{\"name\": <function-name>, \"arguments\": <args-json-object>}"
    "</tool_call>\n' -}}",
    "{%- endif -%}",
    "{%- for message in messages -%}",
    "{%- if message.role == 'system' -%}",
    "{%- if not (loop.first and ns.system) -%}{{- '<|system|>\n' + message.content + '\n' -}}{%- endif -%}",
    "{%- elif message.role == 'user' and message.name == 'knowledge' -%}",
    "{{- '<|knowledge|>\n' + message.content + '\n' -}}",
    "{%- elif message.role == 'user' -%}",
    "{{- '<|user|>\n' + message.content + '\n' -}}",
    "{%- elif message.role == 'assistant' -%}",
    "{{- '<|assistant|>\n' -}}",
    "{%- if message.reasoning_content -%}{{- '<think>\n' + message.reasoning_content + '\n</think>\n' -}}"
    "{%- endif -%}",
    "{%- if message.content -%}{{- message.content + '\n' -}}{%- endif -%}",
    "{%- for call in message.tool_calls or [] -%}",
    "{%- set f = call.function if call.function is defined else call -%}",
    "{{- '<tool_call>{\"name\": ' + (f.name | tojson) + ', \"arguments\": ' -}}",
    "{%- if f.arguments is string -%}{{- f.arguments -}}{%- else -%}{{- f.arguments | tojson -}}{%- endif -%}",
    "{{- '}</tool_call>\n' -}}",
    "{%- endfor -%}",
    "{{- '<|end|>\n' -}}",
    "{%- elif message.role == 'tool' -%}",
    "{{- '<|tool|>\n' + message.content + '\n' -}}",
    "{%- endif -%}",
    "{%- endfor -%}",
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}",
])
AGENT_SEGMENTS = ("reasoning", "message", "tool_call")
DEFAULT_FIELD_TOKENS = 4096  # a single field longer than this is cut (stated in the notes)
CHARS_PER_TOKEN_CAP = 8  # fields are first cut at 8 characters per allowed token, before tokenizing


@dataclass
class Piece:
    """A run of trajectory text that maps to one (step, segment)."""

    text: str
    step: int
    segment: str  # system, user, knowledge, reasoning, message, tool_call, observation, ...
    scored: bool = False  # agent-written: its tokens count for surprisal


@dataclass
class Rendered:
    """Token ids of a whole trajectory and, per token, the step and segment it came from."""

    token_ids: np.ndarray  # (N,) int64
    steps: np.ndarray  # (N,) int32
    segments: np.ndarray  # (N,) object: segment name
    scored: np.ndarray  # (N,) bool: agent-written tokens
    template: str  # "chat_template" or "horizonlens"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def action_start(self, step: int) -> int | None:
        """Index of the first agent-written token of `step` (where the model starts acting)."""
        idx = np.flatnonzero((self.steps == step) & self.scored)
        return int(idx[0]) if idx.size else None

    def step_range(self, step: int) -> tuple[int, int] | None:
        """[start, end) token indices of `step`, or None if it rendered to no tokens."""
        idx = np.flatnonzero(self.steps == step)
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else None


@dataclass
class ActionParts:
    """An agent action split into what the template keeps apart: reasoning, message and tool calls."""

    reasoning: str | None = None
    message: str | None = None
    tool_calls: list[str] = field(default_factory=list)  # each call's JSON text, as written


def split_action(text: str, in_think: bool = False) -> ActionParts:
    """Split generated text into reasoning (`<think>`…`</think>`), tool calls (`<tool_call>`…) and the message.

    `in_think`: the prompt already opened the reasoning (the text starts inside `<think>`). Whatever follows an
    end-of-turn tag is not part of the action. Text in neither tag is the message; an unclosed tag runs to the end.
    """
    text = text.split("<|end|>", 1)[0]
    reasoning = None
    rest = text
    if not in_think and rest.lstrip().startswith("<think>"):
        rest, in_think = rest.lstrip()[len("<think>"):], True
    if in_think:
        reasoning, _, rest = rest.partition("</think>")
        reasoning = reasoning.strip() or None
    calls = []
    message_parts = []
    while "<tool_call>" in rest:
        before, _, after = rest.partition("<tool_call>")
        message_parts.append(before)
        call, _, rest = after.partition("</tool_call>")
        calls.append(call.strip())
    message_parts.append(rest)
    message = "\n".join(p.strip() for p in message_parts if p.strip()) or None
    return ActionParts(reasoning, message, calls)


def recorded_action(step: dict[str, Any]) -> ActionParts:
    """A recorded agent step (a dict of the `steps` columns) as the same parts, calls as the template writes them."""
    return ActionParts(step.get("reasoning") or None, step.get("message") or None,
                       [_call_json(c) for c in step.get("tool_calls") or []])


def _call_json(call: dict[str, Any]) -> str:
    try:
        args: Any = json.loads(call.get("arguments") or "{}")
    except (json.JSONDecodeError, TypeError):
        args = call.get("arguments")
    return json.dumps({"name": call.get("name"), "arguments": args}, ensure_ascii=False)


def pieces(steps: Iterable[dict[str, Any]]) -> list[Piece]:
    """The Horizon Lens template as (text, step, segment) pieces, in order."""
    out: list[Piece] = []
    for s in steps:
        n, src = int(s["step"]), s.get("source")
        if src in ("system", "user") or (src == "environment" and s.get("message")):
            role = "system" if src == "system" else "user"
            out += [Piece(f"<|{role}|>\n", n, "template"), Piece(s.get("message") or "", n, role),
                    Piece("\n", n, "template")]
        if s.get("knowledge"):
            out += [Piece("<|knowledge|>\n", n, "template"), Piece(s["knowledge"], n, "knowledge"),
                    Piece("\n", n, "template")]
        if src == "agent":
            agent = src == "agent"
            out.append(Piece("<|assistant|>\n", n, "template"))
            if s.get("reasoning"):
                out += [Piece("<think>\n", n, "template"), Piece(s["reasoning"], n, "reasoning", agent),
                        Piece("\n</think>\n", n, "template")]
            if s.get("message"):
                out += [Piece(s["message"], n, "message", agent), Piece("\n", n, "template")]
            for call in s.get("tool_calls") or []:
                out += [Piece("<tool_call>", n, "template"), Piece(_call_json(call), n, "tool_call", agent),
                        Piece("</tool_call>\n", n, "template")]
            out.append(Piece("<|end|>\n", n, "template"))
        for obs in s.get("observations") or []:
            out += [Piece("<|tool|>\n", n, "template"), Piece(obs.get("content") or "", n, "observation"),
                    Piece("\n", n, "template")]
    return [p for p in out if p.text]


def trajectory_text(steps: Iterable[dict[str, Any]]) -> str:
    """A trajectory as one string in the Horizon Lens template (what the sample checkpoint trains on)."""
    return "".join(p.text for p in pieces(steps))


def render(tokenizer: Any, steps: list[dict[str, Any]], use_chat_template: bool | None = None,
           max_field_tokens: int = DEFAULT_FIELD_TOKENS) -> Rendered:
    """Tokenize a trajectory's steps (dicts with the corpus `steps` columns)."""
    steps, notes = _cap_fields(steps, max_field_tokens * CHARS_PER_TOKEN_CAP)
    template = getattr(tokenizer, "chat_template", None)
    # the Horizon Lens template as a chat template renders what the pieces do: they map every token exactly
    has_template = bool(template) and template != HORIZONLENS_CHAT_TEMPLATE
    if use_chat_template if use_chat_template is not None else has_template:
        rendered = _render_chat(tokenizer, steps, max_field_tokens)
    else:
        rendered = _render_pieces(tokenizer, pieces(steps), max_field_tokens)
    rendered.notes[:0] = notes
    return rendered


def _cap_fields(steps: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Cut huge text fields before tokenizing (a 5 MB observation would dominate the replay)."""
    out, notes = [], []
    for s in steps:
        obs = s.get("observations") or []
        if any(len(o.get("content") or "") > max_chars for o in obs):
            s = dict(s)
            s["observations"] = [dict(o, content=(o.get("content") or "")[:max_chars]) for o in obs]
            notes.append(f"step {s['step']}: observation cut to its first {max_chars:,} characters")
        for key in ("reasoning", "message", "knowledge"):
            if len(s.get(key) or "") > max_chars:
                s = dict(s)
                s[key] = s[key][:max_chars]
                notes.append(f"step {s['step']}: {key} cut to its first {max_chars:,} characters")
        out.append(s)
    return out, notes


def _render_pieces(tokenizer: Any, parts: list[Piece], max_field_tokens: int) -> Rendered:
    notes: list[str] = []
    encoded = tokenizer([p.text for p in parts], add_special_tokens=False)["input_ids"] if parts else []
    ids: list[int] = []
    steps: list[int] = []
    segs: list[str] = []
    scored: list[bool] = []
    for part, toks in zip(parts, encoded, strict=True):
        if len(toks) > max_field_tokens:
            notes.append(f"step {part.step}: {part.segment} cut from {len(toks):,} to {max_field_tokens:,} tokens")
            toks = toks[:max_field_tokens]
        ids += toks
        steps += [part.step] * len(toks)
        segs += [part.segment] * len(toks)
        scored += [part.scored] * len(toks)
    return Rendered(np.asarray(ids, dtype=np.int64), np.asarray(steps, dtype=np.int32), np.asarray(segs, dtype=object),
                    np.asarray(scored, dtype=bool), "horizonlens", notes)


def chat_messages(steps: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Piece]]:
    """OpenAI-style messages for a chat template, and the pieces to locate in the rendered text."""
    messages: list[dict[str, Any]] = []
    located: list[Piece] = []
    for s in steps:
        n, src = int(s["step"]), s.get("source")
        if s.get("knowledge"):
            messages.append({"role": "user", "content": s["knowledge"]})
            located.append(Piece(s["knowledge"], n, "knowledge"))
        if src in ("system", "user") or (src == "environment" and s.get("message")):
            role = "system" if src == "system" and not messages else "user"
            messages.append({"role": role, "content": s.get("message") or ""})
            located.append(Piece(s.get("message") or "", n, "system" if src == "system" else "user"))
        if src == "agent":
            msg: dict[str, Any] = {"role": "assistant", "content": s.get("message") or ""}
            if s.get("reasoning"):
                msg["reasoning_content"] = s["reasoning"]
                located.append(Piece(s["reasoning"], n, "reasoning", True))
            if s.get("message"):
                located.append(Piece(s["message"], n, "message", True))
            calls = []
            for c in s.get("tool_calls") or []:
                try:
                    args: Any = json.loads(c.get("arguments") or "{}")
                except (json.JSONDecodeError, TypeError):
                    args = c.get("arguments")
                calls.append({"id": c.get("id"), "type": "function",
                              "function": {"name": c.get("name"), "arguments": args}})
                located.append(Piece(c.get("name") or "", n, "tool_call", True))
                located.append(Piece(json.dumps(args, ensure_ascii=False) if not isinstance(args, str) else args,
                                     n, "tool_call", True))
            if calls:
                msg["tool_calls"] = calls
            messages.append(msg)
        for obs in s.get("observations") or []:
            messages.append({"role": "tool", "tool_call_id": obs.get("call_id"), "content": obs.get("content") or ""})
            located.append(Piece(obs.get("content") or "", n, "observation"))
    return messages, [p for p in located if p.text]


def _find(text: str, piece: Piece, cursor: int) -> tuple[int, int]:
    """Locate a piece at or after `cursor`, trying the spellings a template may use for JSON."""
    variants = [piece.text]
    if piece.segment == "tool_call":
        try:
            obj = json.loads(piece.text)
            variants += [json.dumps(obj), json.dumps(obj, ensure_ascii=False, separators=(",", ":"))]
        except (json.JSONDecodeError, TypeError):
            pass
    for v in variants:
        i = text.find(v, cursor)
        if i >= 0:
            return i, i + len(v)
    return -1, -1


def _render_chat(tokenizer: Any, steps: list[dict[str, Any]], max_field_tokens: int) -> Rendered:
    messages, located = chat_messages(steps)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    n_chars = len(text)
    char_step = np.full(n_chars, -1, dtype=np.int32)
    char_seg = np.full(n_chars, "template", dtype=object)
    char_scored = np.zeros(n_chars, dtype=bool)
    notes: list[str] = []
    dropped: dict[str, int] = {}
    cursor = 0
    for piece in located:
        start, end = _find(text, piece, cursor)
        if start < 0:
            dropped[piece.segment] = dropped.get(piece.segment, 0) + 1
            continue
        char_step[cursor:start] = np.where(char_step[cursor:start] < 0, piece.step, char_step[cursor:start])
        char_step[start:end] = piece.step
        char_seg[start:end] = piece.segment
        char_scored[start:end] = piece.scored
        cursor = end
    last = steps[-1]["step"] if steps else 0
    char_step[char_step < 0] = last
    for seg, count in dropped.items():
        notes.append(f"the chat template left out {count} {seg} piece(s); those tokens are not in the replay")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    starts = np.asarray([min(max(a, 0), max(n_chars - 1, 0)) for a, _ in enc["offset_mapping"]], dtype=np.int64)
    rendered = Rendered(ids, char_step[starts].astype(np.int32), char_seg[starts], char_scored[starts],
                        "chat_template", notes)
    return rendered
