"""Hand-made hostile inputs, one or more per format, each with the outcome the importer must produce.

Every case writes its files into a temporary folder at test time (bombs and 20 MB strings are never
committed) and states what must happen: how many trajectories are imported, and which problems are
reported, each as (file name, location, words of the reason). tests/unit/test_hostile_files.py runs them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.hostile.zipkit import Member, deflate_stream, repeat, write_zip

MB = 1 << 20


@dataclass
class Case:
    name: str
    build: Callable[[Path], list[Path]]  # writes the input files, returns the paths to import
    added: int  # trajectories imported
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (file name, where, reason substring)
    cuts: int = 0  # records imported with a string cut
    limits: dict[str, int] = field(default_factory=dict)  # readers/zips limits lowered for this case


def tau(i: int, **kw: object) -> dict:
    rec = {"task_id": i, "trial": 0, "reward": 1.0, "info": {"task": {"instruction": f"task {i}"}},
           "traj": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}
    rec.update(kw)
    return rec


def text(name: str, body: str | bytes) -> Callable[[Path], list[Path]]:
    def build(tmp: Path) -> list[Path]:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
        return [p]
    return build


def lines(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


ATIF = {"schema_version": "ATIF-v1.2", "session_id": "s", "agent": {"name": "a"},
        "steps": [{"step_id": 1, "source": "user", "message": "do"},
                  {"step_id": 2, "source": "agent", "message": "ok", "metrics": {"prompt_tokens": 3}}]}
SWE = {"environment": "e", "info": {"exit_status": "submitted"}, "history": [{"role": "user", "content": "fix"}],
       "trajectory": [{"thought": "t", "action": "ls", "observation": "a", "execution_time": 0.5}]}
MINI = {"trajectory_format": "mini-swe-agent-1", "info": {"exit_status": "Submitted"},
        "messages": [{"role": "user", "content": "task"}, {"role": "assistant", "content": "```bash\nls\n```"},
                     {"role": "user", "content": "<returncode>0</returncode>"}]}
WHO = {"is_correct": False, "question": "q", "mistake_agent": "A", "mistake_step": "0",
       "history": [{"content": "plan", "role": "assistant", "name": "A"}]}
HANDS = {"instance_id": "r__1", "history": [{"id": 1, "source": "agent", "action": "run", "args": {"command": "ls"}},
                                            {"id": 2, "observation": "run", "cause": 1, "content": "a",
                                             "extras": {"exit_code": 0}}]}
SAMPLE = {"id": "s1", "epoch": 1, "input": "hi", "scores": {"m": {"value": "C"}},
          "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
HEADER = json.dumps({"eval": {"run_id": "r", "task": "t", "model": "m"}}).encode()


def sample(i: int, **kw: object) -> bytes:
    return json.dumps(SAMPLE | {"id": f"s{i}"} | kw).encode()


def eval_zip(name: str, *members: Member) -> Callable[[Path], list[Path]]:
    return lambda tmp: [write_zip(tmp / name, list(members))]


def bomb(declared: int | None) -> Callable[[Path], list[Path]]:
    def build(tmp: Path) -> list[Path]:
        head = b'{"id": "b", "epoch": 1, "scores": {}, "messages": [{"role": "user", "content": "'
        payload, crc, size = deflate_stream([head, *repeat(b"A" * MB, 1024 * MB), b'"}]}'])
        return [write_zip(tmp / "bomb.eval", [Member("header.json", HEADER),
                                              Member("samples/bomb.json", compressed=payload, crc=crc,
                                                     size=declared if declared is not None else size),
                                              Member("samples/ok.json", sample(1))])]
    return build


BIG = "B" * (20 * MB)  # past MAX_STRING_BYTES (16 MB)
HUGE_INT = "9" * 5000

CASES: list[Case] = [
    # --- the readers (JSON Lines, arrays, single values), with openai-chat / tau-bench records --------
    Case("jsonl: garbage first line", text("a.jsonl", lines("%%% not json", tau(1), tau(2))), 2,
         [("a.jsonl", "line 1", "not JSON")]),
    Case("json named, jsonl inside, garbage first line", text("a.json", lines("garbage", tau(1), tau(2))), 2,
         [("a.json", "line 1", "not JSON")]),
    Case("jsonl: invalid UTF-8 on line 1", text("a.jsonl", b'{"x": "\xff\xfe"}\n' + lines(tau(1)).encode()), 1,
         [("a.jsonl", "line 1", "not UTF-8")]),
    Case("jsonl: invalid UTF-8 inside a good record", text("a.jsonl", lines(tau(1)).encode() + json.dumps(
        tau(2)).encode().replace(b"hi", b"h\xc3") + b"\n"), 1, [("a.jsonl", "line 2", "not UTF-8")]),
    Case("jsonl: 5,000-digit integer", text("a.jsonl", lines(tau(1), '{"task_id": 2, "trial": ' + HUGE_INT
                                                             + ', "traj": []}', tau(3))), 2,
         [("a.jsonl", "line 2", "4,300 digits")]),
    Case("array: 5,000-digit integer in one record", text("a.json", "[" + ",".join(
        [json.dumps(tau(1)), '{"task_id": 2, "reward": ' + HUGE_INT + ', "traj": []}', json.dumps(tau(3))]) + "]"),
        2, [("a.json", "record 1", "4,300 digits")]),
    Case("array: reward 1e400", text("a.json", "[" + json.dumps(tau(1)) + ', {"task_id": 2, "reward": 1e400, '
                                     '"traj": []}]'), 1, [("a.json", "record 1", "not a finite number")]),
    Case("array: NaN reward", text("a.json", "[" + json.dumps(tau(1)) + ', {"task_id": 2, "reward": NaN, '
                                   '"traj": []}]'), 1, [("a.json", "record 1", "not a finite number")]),
    Case("array: trial 10^30", text("a.json", json.dumps([tau(1), tau(2, trial=10**30)])), 1,
         [("a.json", "record 1", "out of range")]),
    Case("array: one record nested 5,000 deep", text("a.json", "[" + json.dumps(tau(1)) + ", " + "[" * 5000
                                                     + "]" * 5000 + ", " + json.dumps(tau(3)) + "]"), 2,
         [("a.json", "record 1", "nested deeper than 100")]),
    Case("array: 100,000 levels", text("a.json", "[" * 100_000 + "]" * 100_000), 0,
         [("a.json", "record 0", "nested deeper")]),
    Case("array: truncated", text("a.json", json.dumps([tau(1), tau(2)])[:-40]), 1,
         [("a.json", "record 1", "truncated")]),
    Case("array: data after the end", text("a.json", json.dumps([tau(1)]) + " trailing junk"), 1,
         [("a.json", "file", "data after the end")]),
    Case("array: a record that is not an object", text("a.json", json.dumps([tau(1), 42, "x", None])), 1,
         [("a.json", "record 1", "unrecognised"), ("a.json", "record 2", "unrecognised"),
          ("a.json", "record 3", "unrecognised")]),
    Case("array: empty element", text("a.json", "[" + json.dumps(tau(1)) + ",, " + json.dumps(tau(2)) + "]"), 2),
    Case("binary junk", text("junk.json", bytes(range(256)) * 40), 0, [("junk.json", "file", "binary")]),
    Case("empty file", text("e.json", ""), 0, [("e.json", "file", "empty")]),
    Case("whitespace only", text("e.jsonl", " \n\n \t\n"), 0, [("e.jsonl", "file", "empty")]),
    Case("byte order mark", text("a.json", "\ufeff" + json.dumps([tau(1)])), 1),
    Case("20 MB string in a JSON array", text("a.json", json.dumps([tau(1), tau(2, traj=[
        {"role": "user", "content": BIG}])])), 2, cuts=1),
    Case("20 MB string in JSON Lines", text("a.jsonl", lines(tau(1, traj=[{"role": "user", "content": BIG}]),
                                                           tau(2))), 2, cuts=1),
    Case("20 MB of \\u escapes, cut between escapes", text("a.json", json.dumps(
        {"messages": [{"role": "user", "content": "\u00e9" * (4 * MB)}]}, ensure_ascii=True)), 1, cuts=1),
    Case("20 MB of 3-byte characters, cut between characters", text("a.json", json.dumps(
        {"messages": [{"role": "user", "content": "\u6f22" * (7 * MB)}]}, ensure_ascii=False)), 1, cuts=1),
    Case("record over the record limit", text("a.jsonl", lines(tau(1, traj=[{"role": "user", "content": "y" * MB}]),
                                                             tau(2))), 1,
         [("a.jsonl", "line 1", "record larger than")], limits={"MAX_RECORD_BYTES": MB // 2}),
    Case("lone surrogate and NUL in text", text("a.json", '[{"task_id": 1, "traj": [{"role": "user", "content": '
                                               '"\\ud800 and \\u0000"}]}]'), 1),
    Case("thousands of garbage lines", text("a.jsonl", lines(tau(1)) + "x\n" * 3000), 1,
         [("a.jsonl", "line 2", "not JSON"), ("a.jsonl", "file", "stopped reading")]),
    Case("hostile tool_calls and role", text("a.jsonl", lines(
        tau(1, traj=[{"role": "assistant", "tool_calls": 5}]), tau(2, traj=[{"role": ["x"]}]), tau(3))), 1,
         [("a.jsonl", "line 1", "tool_calls should be a list"), ("a.jsonl", "line 2", "unknown role")]),
    Case("trajectory id of 5,000 characters", text("a.json", json.dumps([tau(1), tau("x" * 5000)])), 1,
         [("a.json", "record 1", "id longer than")]),
    Case("fields of the wrong type", text("a.jsonl", lines({"messages": [{"role": "user", "content": "x"}],
                                                          "model": {"a": 1}, "question": [1]}, tau(2))), 2),
    # --- atif ---------------------------------------------------------------------------------------
    Case("atif: 1e400 token count", text("a.jsonl", lines(ATIF | {"session_id": "a1", "steps": [
        {"source": "agent", "message": "x", "metrics": {"prompt_tokens": 1e400}}]}, ATIF)), 1,
         [("a.jsonl", "line 1", "not a finite number")]),
    Case("atif: token count is text", text("a.jsonl", lines(ATIF | {"session_id": "a1", "steps": [
        {"source": "agent", "metrics": {"completion_tokens": "many"}}]}, ATIF)), 1,
         [("a.jsonl", "line 1", "whole number")]),
    Case("atif: steps not a list, bad timestamp", text("a.jsonl", lines(ATIF | {"session_id": "a1", "steps": "x"},
                                                                         ATIF | {"steps": [{"timestamp": "never"}]})),
         1, [("a.jsonl", "line 1", "should be list")]),
    Case("atif: hostile result.json beside it", lambda tmp: [
        *text("run/trajectory.json", json.dumps(ATIF))(tmp), *text("run/result.json", b"\x00\xff" * 100)(tmp)][:1],
        1),
    # --- swe-agent ----------------------------------------------------------------------------------
    Case("swe-agent: execution_time 10^400", text("x.traj", json.dumps(SWE | {"trajectory": [
        {"action": "ls", "observation": "a", "execution_time": 10**400}]})), 0,
         [("x.traj", "file", "too large a number")]),
    Case("swe-agent: execution_time 1e400", text("x.traj", json.dumps(SWE).replace("0.5", "1e400")), 0,
         [("x.traj", "file", "not a finite number")]),
    Case("swe-agent: entries not objects", text("x.traj", json.dumps(SWE | {"trajectory": [1, 2]})), 0,
         [("x.traj", "file", "trajectory[0] is not an object")]),
    Case("swe-agent: action is an object", text("x.traj", json.dumps(SWE | {"trajectory": [
        {"action": {"cmd": "ls"}, "observation": {"deep": [[["x"]]]}}]})), 1),
    # --- mini-swe-agent -----------------------------------------------------------------------------
    Case("mini-swe-agent: unknown role, 50-digit return code", text("m.traj.json", json.dumps(MINI | {
        "messages": [*MINI["messages"], {"role": "user", "content": "<returncode>" + "9" * 50 + "</returncode>"},
                     {"role": "wizard"}]})), 0, [("m.traj.json", "file", "unknown role")]),
    # --- who-and-when -------------------------------------------------------------------------------
    Case("who-and-when: bad mistake_step values", lambda tmp: [
        *text("W/1.json", json.dumps(WHO | {"mistake_step": "abc"}))(tmp),
        *text("W/2.json", json.dumps(WHO).replace('"0"', "1e400"))(tmp),
        *text("W/3.json", json.dumps(WHO | {"mistake_step": 7}))(tmp),
        *text("W/4.json", json.dumps(WHO | {"history": {"a": 1}}))(tmp),
        *text("W/5.json", json.dumps(WHO))(tmp)], 1,
         [("1.json", "file", "whole number"), ("2.json", "file", "not a finite number"),
          ("3.json", "file", "outside the history"), ("4.json", "file", "should be list")]),
    # --- openhands ----------------------------------------------------------------------------------
    Case("openhands: list ids, huge exit code, non-object event", text("o.jsonl", lines(
        HANDS | {"history": [{"id": [1], "action": "run", "args": {"command": "ls"}},
                             {"observation": "run", "cause": [1], "content": "x", "extras": {"exit_code": 10**30}}]},
        HANDS | {"instance_id": "r__2", "history": [1]})), 1, [("o.jsonl", "line 2", "history[0] is not an object")]),
    # --- inspect (.json logs and .eval archives) ------------------------------------------------------
    Case("inspect json: samples not a list", text("log.json", json.dumps({"eval": {}, "samples": {"a": 1}})), 0,
         [("log.json", "file", "'samples' is not a list")]),
    Case("eval: deflate64 members", eval_zip("a.eval", Member("header.json", HEADER, 9),
                                              Member("samples/a.json", sample(1), 9)), 1),
    Case("eval: zstd members", eval_zip("a.eval", Member("header.json", HEADER, 93),
                                         Member("samples/a.json", sample(1), 93)), 1),
    Case("eval: bzip2 and stored members", eval_zip("a.eval", Member("header.json", HEADER, 12),
                                                     Member("samples/a.json", sample(1), 0)), 1),
    Case("eval: lzma member (unsupported)", eval_zip("a.eval", Member("header.json", HEADER),
                                                      Member("samples/a.json", sample(1), 14),
                                                      Member("samples/b.json", sample(2))), 1,
         [("a.eval", "samples/a.json", "not supported")]),
    Case("eval: encrypted flag", eval_zip("a.eval", Member("header.json", HEADER),
                                          Member("samples/a.json", sample(1), flags=1),
                                          Member("samples/b.json", sample(2))), 1,
         [("a.eval", "samples/a.json", "encrypted")]),
    Case("eval: end-of-archive record only", text("a.eval", b"PK\x05\x06" + b"\x00" * 18), 0,
         [("a.eval", "file", "no samples")]),
    Case("eval: end-of-archive record claiming members", text("a.eval", b"PK\x05\x06\x00\x00\x00\x00\x05\x00\x05"
                                                                     b"\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00"),
         0, [("a.eval", "file", "not a readable zip")]),
    Case("eval: deeply nested header", eval_zip("a.eval", Member("header.json", b'{"eval":' * 5000 + b"1"
                                                                 + b"}" * 5000),
                                                Member("samples/a.json", sample(1))), 1,
         [("a.eval", "header.json", "nested deeper")]),
    Case("eval: CRC error in the first sample", eval_zip("a.eval", Member("header.json", HEADER),
                                                          Member("samples/a.json", sample(1), crc=1),
                                                          Member("samples/b.json", sample(2)),
                                                          Member("samples/c.json", sample(3))), 2,
         [("a.eval", "samples/a.json", "CRC")]),
    Case("eval: damaged compressed data", eval_zip("a.eval", Member("header.json", HEADER),
                                                   Member("samples/a.json", compressed=b"\xff" * 64, crc=0, size=10),
                                                   Member("samples/b.json", sample(2))), 1,
         [("a.eval", "samples/a.json", "damaged compressed data")]),
    Case("eval: declared size differs", eval_zip("a.eval", Member("header.json", HEADER),
                                                 Member("samples/a.json", sample(1), size=5),
                                                 Member("samples/b.json", sample(2))), 1,
         [("a.eval", "samples/a.json", "damaged member")]),
    Case("eval: truncated archive", lambda tmp: [_truncate(write_zip(tmp / "a.eval", [
        Member("samples/a.json", sample(1), 0), Member("samples/b.json", sample(2), 0)]))], 0,
         [("a.eval", "file", "not a readable zip")]),
    Case("eval: member is not JSON", eval_zip("a.eval", Member("header.json", HEADER),
                                              Member("samples/a.json", b"\x00" * 5000),
                                              Member("samples/b.json", b'{"broken": '),
                                              Member("samples/c.json", sample(3))), 1,
         [("a.eval", "samples/a.json", "not JSON"), ("a.eval", "samples/b.json", "not valid JSON")]),
    Case("eval: member names with ../ (never extracted)", eval_zip("a.eval", Member("header.json", HEADER),
                                                                   Member("samples/../../x.json", sample(1))), 1),
    Case("eval: zip bomb, 1 GiB member with its size declared", bomb(None), 1,
         [("bomb.eval", "samples/bomb.json", "expands beyond 256 MB")]),
    Case("eval: zip bomb, 1 GiB member declared as 1 KB", bomb(1000), 1,
         [("bomb.eval", "samples/bomb.json", "expands beyond")]),
    Case("eval: zip bomb under the ratio cap", bomb(1000), 1,
         [("bomb.eval", "samples/bomb.json", "expands beyond")], limits={"MAX_RATIO": 20}),
]


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
