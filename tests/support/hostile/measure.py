"""Peak memory and wall time of hostile imports next to a normal import of similar size (not a test).

Run: `.venv/bin/python -m tests.support.hostile.measure [--old PYTHONPATH]`. Each import runs in a fresh
interpreter that reports its peak RSS (VmHWM from /proc, as horizonlens.bench.run does) and its wall
time. `--old DIR` also runs each import with the `horizonlens` found in DIR (e.g. a checkout of an
earlier commit), for a before/after comparison in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.hostile.zipkit import Member, deflate_stream, repeat, write_zip

MB = 1 << 20
CHILD = """
import json, re, sys, time
from horizonlens.ingest import import_paths
from horizonlens.errors import HorizonLensError
t = time.perf_counter()
try:
    r = import_paths([sys.argv[1]], sys.argv[2])
    added, problems = r.added, [str(p) for p in r.problems]
except HorizonLensError as exc:  # nothing readable: the import refuses, with the problems in the message
    added, problems = 0, str(exc).splitlines()[1:]
wall = time.perf_counter() - t
hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))
print(json.dumps({'peak_rss_mb': hwm / 1024, 'wall_s': wall, 'added': added, 'problems': len(problems),
                  'first_problem': problems[0][-160:] if problems else None}))
"""


def _record(i: int, text: str) -> dict:
    return {"task_id": i, "trial": 0, "reward": 1.0,
            "traj": [{"role": "user", "content": "do it"}, {"role": "assistant", "content": text}]}


def build(tmp: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    big = "A" * (200 * MB)
    files["normal 200 MB array (2,000 records of 100 KB)"] = tmp / "normal.json"
    with (tmp / "normal.json").open("w") as fh:
        fh.write("[" + ",".join(json.dumps(_record(i, f"{i} " + "x" * 100_000)) for i in range(2000)) + "]")
    files["200 MB string field, one JSON object"] = tmp / "one.json"
    (tmp / "one.json").write_text(json.dumps({"messages": [{"role": "user", "content": big}]}))
    files["200 MB string field inside a JSON array"] = tmp / "array.json"
    (tmp / "array.json").write_text(json.dumps([_record(0, "ok"), _record(1, big), _record(2, "ok")]))
    del big
    sample = {"id": "s", "epoch": 1, "input": "x", "scores": {"m": {"value": "C"}},
              "messages": [{"role": "user", "content": "x"}]}
    header = Member("header.json", json.dumps({"eval": {"run_id": "r", "task": "t"}}).encode())
    normal = [header] + [Member(f"samples/{i}.json", json.dumps(sample | {"id": i, "messages": [
        {"role": "user", "content": f"task {i} " + os.urandom(3000).hex()}]}).encode()) for i in range(150)]
    files["normal .eval (150 samples)"] = write_zip(tmp / "normal.eval", normal)
    head = b'{"id": "bomb", "epoch": 1, "scores": {}, "messages": [{"role": "user", "content": "'
    blocks = [head, *repeat(b"A" * MB, 1024 * MB), b'"}]}']
    payload, crc, size = deflate_stream(blocks)
    bomb = Member("samples/bomb.json", compressed=payload, crc=crc, size=size)
    files["zip bomb: 1 GiB member, size declared"] = write_zip(tmp / "bomb.eval", [header, bomb])
    liar = Member("samples/bomb.json", compressed=payload, crc=crc, size=1000)
    files["zip bomb: 1 GiB member, declared as 1 KB"] = write_zip(tmp / "liar.eval", [header, liar])
    return files


def child(script: str, args: list[str], pythonpath: str | None, timeout: float = 900) -> dict:
    """Run `script` in a fresh interpreter (with `pythonpath` first, if given); the JSON its last line prints."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr else f"rc {proc.returncode}",
                "wall_s": time.perf_counter() - t}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(path: Path, pythonpath: str | None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        return child(CHILD, [str(path), str(Path(out) / "c")], pythonpath)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="PYTHONPATH with an earlier horizonlens, run beside the current one")
    ap.add_argument("--skip-old", default="", help="comma-separated case numbers not to run with --old")
    args = ap.parse_args()
    skip = {int(x) for x in args.skip_old.split(",") if x}
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp))
        results = []
        for n, (name, path) in enumerate(files.items()):
            row = {"case": name, "file_mb": round(path.stat().st_size / MB, 1), "now": run(path, None)}
            if args.old and n not in skip:
                row["before"] = run(path, args.old)
            results.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
