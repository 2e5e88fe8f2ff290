"""Property-based tests: converters and readers on arbitrary input raise only RecordError, never a traceback.

- every format's `convert` on any JSON-like value (and on values shaped like its own records, with
  fields replaced by arbitrary JSON) either raises RecordError or yields rows that fit the corpus schema;
- every `detect` returns a bool for any JSON value;
- the readers turn any bytes into Raws and Problems, whatever the file's suffix or container.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horizonlens.corpus.files import conform
from horizonlens.corpus.schema import STEPS, TRAJECTORIES
from horizonlens.ingest import FORMATS, Problem, Raw, RecordError, records_of
from horizonlens.ingest.readers import records_from_chunks
from horizonlens.ingest.writer import finalize
from tests.support.hostile.cases import ATIF, HANDS, MINI, SAMPLE, SWE, WHO, tau

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["user", "assistant", "tool", "system", "<returncode>1</returncode>",
                                     "exitcode: 1", "Error: x", "C", "I", "```bash\nls\n```"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12) | st.sampled_from(
        ["role", "content", "tool_calls", "id", "function", "messages", "steps", "history", "traj", "task_id",
         "trial", "reward", "scores", "epoch", "samples", "eval", "info", "metrics", "args", "cause",
         "observation", "extras", "exit_code", "trajectory", "action", "mistake_step", "instance_id"]),
        inner, max_size=5)), max_leaves=25)
SHAPES = [tau(1), ATIF, SWE, MINI, WHO, HANDS, SAMPLE, {"eval": {"run_id": "r"}, "samples": [SAMPLE]},
          [{"role": "user", "content": "x"}]]


@st.composite
def mutated(draw: st.DrawFn) -> object:
    """A real record of some format with some of its fields (at any depth) replaced by arbitrary JSON."""
    value = json.loads(json.dumps(draw(st.sampled_from(SHAPES))))
    for _ in range(draw(st.integers(1, 4))):
        node, path = value, []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append((node, key))
            node = node[key]
        if path:
            parent, key = path[-1]
            parent[key] = draw(JSON)
    return value


def _check(value: object, fmt_name: str) -> None:
    fmt = next(f for f in FORMATS if f.name == fmt_name)
    try:
        rows = list(fmt.convert(Raw(value, "x/run.json", "record 0")))
    except RecordError:
        return
    for traj, steps in rows:
        finalize(traj, steps)
        conform(pa.Table.from_pylist([traj], schema=TRAJECTORIES), "trajectories")
        pa.Table.from_pylist(steps, schema=STEPS)
        for v in traj.values():
            assert not (isinstance(v, float) and not math.isfinite(v))


@pytest.mark.parametrize("fmt_name", [f.name for f in FORMATS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON)
def test_convert_arbitrary_json(fmt_name: str, value: object) -> None:
    _check(value, fmt_name)


@pytest.mark.parametrize("fmt_name", [f.name for f in FORMATS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=mutated())
def test_convert_mutated_records(fmt_name: str, value: object) -> None:
    _check(value, fmt_name)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(JSON, mutated()))
def test_detect_is_total(value: object) -> None:
    assert all(isinstance(f.detect(value), bool) for f in FORMATS)


BYTES = st.one_of(st.binary(max_size=400), JSON.map(lambda v: json.dumps(v).encode()),
                  st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b",", b"\n", b"1", b"9" * 5000,
                                            b"\xff", b"\xc3", b'"a"', b":", b" ", b"\\u12", b"null"]),
                           max_size=60).map(b"".join))


@pytest.mark.parametrize("mode", ["array", "lines", "value"])
@settings(max_examples=200, deadline=None)
@given(data=BYTES, split=st.integers(1, 50))
def test_splitter_on_arbitrary_bytes(mode: str, data: bytes, split: int) -> None:
    chunks = [data[i:i + split] for i in range(0, len(data), split)]
    for rec in records_from_chunks(chunks, "f", mode):  # type: ignore[arg-type]
        assert isinstance(rec, (Raw, Problem))


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".eval"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(BYTES, BYTES.map(lambda b: b"PK\x03\x04" + b), BYTES.map(lambda b: b + b"PK\x05\x06" + b)))
def test_files_of_arbitrary_bytes(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    for rec in records_of(path):
        assert isinstance(rec, (Raw, Problem))


def test_splitting_does_not_change_records() -> None:
    """The same JSON read in chunks of any size gives the same records as json.loads."""
    records = [tau(i) | {"note": "a \\\" b \u00e9 \\\\", "n": [1, {"x": "]},["}]} for i in range(5)]
    data = json.dumps(records, ensure_ascii=False).encode()
    for size in (1, 2, 3, 7, 64, len(data)):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        got = [r.value for r in records_from_chunks(chunks, "f", "array") if isinstance(r, Raw)]
        assert got == records
        lines = b"\n".join(json.dumps(r).encode() for r in records)
        got = [r.value for r in records_from_chunks([lines[i:i + size] for i in range(0, len(lines), size)], "f",
                                                    "lines") if isinstance(r, Raw)]
        assert got == records
