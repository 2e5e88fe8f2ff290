"""The corpus contract: pyarrow schemas for every table a corpus holds.

A corpus is a directory of Parquet datasets (see docs/corpus-format.md). These schemas are the
single definition of that format: the sample generator, the importers and the replay engine
write with them, and the store validates every file it opens against them.
"""

from __future__ import annotations

import pyarrow as pa

from horizonlens.errors import SchemaError

SCHEMA_VERSION = 1

# Values the enumerated string columns may take. Kept as plain strings in Parquet so any tool
# can read a corpus; validated on write.
OUTCOMES = ("success", "failure", "unknown")
STEP_SOURCES = ("system", "user", "agent", "environment")
LABEL_SOURCES = ("verifier", "annotation", "heuristic")
SEGMENTS = ("system", "user", "knowledge", "reasoning", "message", "tool_call", "observation", "template")

TOOL_CALL = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("arguments", pa.string()),  # JSON text, as the agent wrote it
    ]
)
OBSERVATION = pa.struct(
    [
        pa.field("call_id", pa.string()),  # the tool call this answers (nullable)
        pa.field("content", pa.string()),
    ]
)

TRAJECTORIES = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string()),
        pa.field("trial", pa.int32()),
        pa.field("source", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("agent", pa.string()),
        pa.field("teacher", pa.string()),
        pa.field("task", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("reward", pa.float64()),
        pa.field("n_steps", pa.int32()),
        pa.field("n_tokens", pa.int64()),
        pa.field("n_failed_checks", pa.int32()),
        pa.field("first_failed_step", pa.int32()),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("duration_s", pa.float64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("metadata", pa.string()),  # JSON text
    ]
)

STEPS = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("message", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL)),
        pa.field("observations", pa.list_(OBSERVATION)),
        pa.field("knowledge", pa.string()),
        pa.field("check_passed", pa.bool_()),
        pa.field("check_detail", pa.string()),
        pa.field("error_label", pa.string()),
        pa.field("is_decisive_error", pa.bool_()),
        pa.field("label_source", pa.string()),
        pa.field("n_tokens", pa.int32()),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("duration_s", pa.float64()),
        pa.field("cost_usd", pa.float64()),
    ]
)

# Replay outputs (written by the model part under replays/<checkpoint_id>/).
REPLAY_STEPS = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("n_tokens", pa.int32()),  # rendered tokens of this step
        pa.field("n_scored", pa.int32()),  # agent-written tokens scored for surprisal
        pa.field("surprisal", pa.float32()),  # mean NLL (nats) of agent-written tokens
        pa.field("max_surprisal", pa.float32()),
        pa.field("top1_agreement", pa.float32()),  # share of agent tokens the model ranks first
        pa.field("entropy", pa.float32()),  # mean router entropy over the step's tokens and layers
        pa.field("truncated", pa.bool_()),  # step fell (partly) outside the model's context
    ]
)

ROUTING = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("segment", pa.string()),
        pa.field("token_index", pa.int32()),
        pa.field("token_id", pa.int32()),
        pa.field("layer", pa.int16()),
        pa.field("experts", pa.list_(pa.int16())),
        pa.field("weights", pa.list_(pa.float16())),
        pa.field("entropy", pa.float16()),
    ]
)

# The routing tiers (replays/codec.py has the encoding; docs/corpus-format.md the layout). Expert
# ids are written in the narrowest unsigned type that holds the checkpoint's expert count (uint8 up to
# 256 experts); any integer type is accepted on read.
ROUTING_TOKENS = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),  # replay (this checkpoint, teacher-forced) or rollout (an engine's)
        pa.field("step", pa.int32(), nullable=False),
        pa.field("segment", pa.string()),
        pa.field("token_index", pa.int32()),  # position in the rendered input
        pa.field("token_id", pa.int32()),
        pa.field("layer", pa.int16()),  # the model's real layer number
        pa.field("experts", pa.list_(pa.uint8())),  # the top-k set as gaps between sorted ids
        pa.field("top1", pa.uint8()),  # position (in the sorted set) of the expert with the largest weight
        pa.field("weights", pa.list_(pa.uint8())),  # weight codes aligned with the sorted set (null: rollout)
        pa.field("weight_scale", pa.float32()),  # weight = code / 15 * weight_scale
        pa.field("margin", pa.uint8()),  # log-scale code of the router's k-th minus (k+1)-th score
        pa.field("entropy", pa.uint8()),  # code of entropy / ln(num_experts)
        pa.field("num_experts", pa.int32()),
    ]
)
# Per-token replay signals (one row per replayed token): the token view's surprisal row. Stored at display
# precision; corpus statistics read the per-step means in REPLAY_STEPS, computed before this rounding.
TOKEN_SURPRISAL = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("token_index", pa.int32()),  # position in the rendered input (as in ROUTING_TOKENS)
        pa.field("surprisal", pa.float16()),  # -ln p(token | everything before it), nats; null for the first token
        pa.field("top1", pa.bool_()),  # the token was the model's own first choice
        pa.field("scored", pa.bool_()),  # agent-written: counted in the step's surprisal
    ]
)
_AGGREGATE = [
    pa.field("layer", pa.int16()),
    pa.field("expert", pa.uint8()),
    pa.field("tokens", pa.int32()),  # tokens routed to this expert
    pa.field("weight", pa.uint8()),  # their mean gate weight: code / 63 * weight_scale
    pa.field("weight_scale", pa.float32()),
]
ROUTING_STEPS = pa.schema([pa.field("trajectory_id", pa.string(), nullable=False),
                           pa.field("step", pa.int32(), nullable=False), *_AGGREGATE])
ROUTING_SEGMENTS = pa.schema([pa.field("trajectory_id", pa.string(), nullable=False),
                              pa.field("segment", pa.string()), *_AGGREGATE])

# Rollout vs replay routing (metrics/rollout.py): the comparison of an inference engine's routing with the
# replay's on the same tokens, folded per step so views never read token rows. Counts are over tokens
# compared (routed on both sides in every MoE layer); near-tie columns are null when the replay has no margins.
ROLLOUT_COMPARE = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("segment", pa.string()),
        pa.field("layer", pa.int16(), nullable=False),
        pa.field("tokens", pa.int32()),  # tokens compared in this (step, segment, layer)
        pa.field("set_mismatch", pa.int32()),  # ... whose top-k sets differ
        pa.field("top1_mismatch", pa.int32()),  # ... whose first (highest-scored) expert differs
        pa.field("jaccard_sum", pa.float64()),  # sum of |A ∩ B| / |A ∪ B| (mean = jaccard_sum / tokens)
        pa.field("near_ties", pa.int32()),  # ... where the replay's k-th vs (k+1)-th margin is a near-tie
        pa.field("near_tie_mismatch", pa.int32()),  # ... set mismatches that are near-ties
    ]
)
ROLLOUT_COMPARE_STEPS = pa.schema(
    [
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("segment", pa.string()),
        pa.field("tokens", pa.int32()),  # tokens compared in this (step, segment)
        pa.field("any_mismatch", pa.int32()),  # ... whose top-k set differs in at least one MoE layer
        pa.field("any_top1_mismatch", pa.int32()),  # ... whose top-1 expert differs in at least one layer
        pa.field("near_tie_only", pa.int32()),  # ... that mismatch only in layers where the replay had a near-tie
    ]
)

TABLES: dict[str, pa.Schema] = {
    "trajectories": TRAJECTORIES,
    "steps": STEPS,
}
REPLAY_TABLES: dict[str, pa.Schema] = {
    "replay_steps": REPLAY_STEPS,
    "routing": ROUTING,
}


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    """Raise SchemaError naming `where` and the first offending column.

    Extra columns are allowed (a user may add their own); missing columns and columns of the
    wrong type are not.
    """
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(f"{where}: missing column '{field.name}' (expected {field.type})")
        got = actual.field(idx).type
        if not _compatible(got, field.type):
            raise SchemaError(f"{where}: column '{field.name}' has type {got}, expected {field.type}")


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got.equals(want):
        return True
    # Writers differ on string vs large_string and timestamp units; the data is the same.
    if pa.types.is_string(want) and (pa.types.is_large_string(got) or pa.types.is_string(got)):
        return True
    if pa.types.is_timestamp(want) and pa.types.is_timestamp(got):
        return True
    if pa.types.is_integer(want) and pa.types.is_integer(got):
        return True
    if pa.types.is_floating(want) and pa.types.is_floating(got):
        return True
    if pa.types.is_null(got):  # an all-null column written without a type
        return True
    if (pa.types.is_list(want) or pa.types.is_large_list(want)) and (
        pa.types.is_list(got) or pa.types.is_large_list(got)
    ):
        return _compatible(got.value_type, want.value_type)
    if pa.types.is_struct(want) and pa.types.is_struct(got):
        names = {got.field(i).name: got.field(i).type for i in range(got.num_fields)}
        return all(
            w.name in names and _compatible(names[w.name], w.type)
            for w in (want.field(i) for i in range(want.num_fields))
        )
    return False


def validate_values(table: pa.Table, name: str, where: str) -> None:
    """Check the enumerated columns and keys of a table about to be written."""
    import pyarrow.compute as pc

    def _enum(col: str, allowed: tuple[str, ...]) -> None:
        if col not in table.column_names:
            return
        values = pc.unique(table[col].drop_null()).to_pylist()
        bad = [v for v in values if v not in allowed]
        if bad:
            raise SchemaError(f"{where}: column '{col}' has value {bad[0]!r}; allowed: {', '.join(allowed)}")

    if name == "trajectories":
        _enum("outcome", OUTCOMES)
        ids = table["trajectory_id"]
        if ids.null_count:
            raise SchemaError(f"{where}: column 'trajectory_id' has nulls")
        if len(pc.unique(ids)) != len(ids):
            raise SchemaError(f"{where}: column 'trajectory_id' has duplicate values")
    elif name == "steps":
        _enum("source", STEP_SOURCES)
        _enum("label_source", LABEL_SOURCES)
