"""Peak memory of hostile rollout files and label files, beside the code before the fix (not a test).

Run: `.venv/bin/python -m tests.support.hostile.measure_arrays [--old PYTHONPATH] [--only rollouts|labels]`.
Each case runs in a fresh interpreter that reports its peak RSS (VmHWM from /proc, as measure.py does) and wall
time; `--old DIR` also runs it with the `horizonlens` found in DIR (a checkout of an earlier commit), for a
same-run comparison.

- rollouts: `read_rollouts` on one file at the Agents-A1 routing shape (40 layers, 256 experts, top-8);
- labels: `import_label_files` of a ~50 MB label table into a corpus of 2,000 runs of 50 steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.corpora import make_corpus, step_row, traj_row
from tests.support.hostile.arrays import A1_EXPERTS, A1_LAYERS, A1_TOP_K, MB, long_token_record, npz_bombs

ROLLOUT_CHILD = f"""
import json, re, sys, time
from horizonlens.model.rollout_files import RoutingShape, read_rollouts
shape = RoutingShape({A1_LAYERS}, tuple(range({A1_LAYERS})), {A1_EXPERTS}, {A1_TOP_K})
t = time.perf_counter()
try:
    good, problems = read_rollouts([sys.argv[1]], shape)
    out = {{'records': len(good), 'problems': [str(p)[-160:] for p in problems][:2]}}
except Exception as exc:
    out = {{'error': f'{{type(exc).__name__}}: {{str(exc)[:160]}}'}}
out['wall_s'] = round(time.perf_counter() - t, 2)
out['peak_rss_mb'] = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024
print(json.dumps(out))
"""

LABEL_CHILD = """
import json, re, sys, time
from horizonlens.ingest.label_files import import_label_files
t = time.perf_counter()
try:
    r = import_label_files([sys.argv[1]], sys.argv[2], 'table')
    out = {'added': r.added, 'problems': len(r.problems)}
except Exception as exc:
    out = {'error': f'{type(exc).__name__}: {str(exc)[:160]}'}
out['wall_s'] = round(time.perf_counter() - t, 2)
out['peak_rss_mb'] = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024
print(json.dumps(out))
"""

RUNS, STEPS = 2_000, 50


def label_table(tmp: Path, target_mb: int = 50) -> tuple[Path, Path]:
    """A corpus of RUNS runs and a CSV label table of about `target_mb` MB on their steps."""
    corpus = make_corpus(tmp / "corpus", [traj_row(f"r{i}", STEPS) for i in range(RUNS)],
                         [step_row(f"r{i}", s) for i in range(RUNS) for s in range(STEPS)])
    path = tmp / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trajectory_id", "step", "label", "category", "note"])
        i = 0
        while fh.tell() < target_mb * MB:
            w.writerow([f"r{i % RUNS}", i % STEPS, f"label {i % 997}", "failure", f"note {i} " + "n" * 60])
            i += 1
    return path, corpus


def run(child: str, args: list[str], pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else f"rc {proc.returncode}"
        return {"failed": tail, "wall_s": round(time.perf_counter() - t, 2)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="PYTHONPATH with an earlier horizonlens, run beside the current one")
    ap.add_argument("--only", choices=["rollouts", "labels"], help="run one group of cases")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cases: list[tuple[str, str, list[str], Path]] = []
        if args.only != "labels":
            for name, path in npz_bombs(tmp).items():
                cases.append((f".npz bomb: 2 GiB in {name}", ROLLOUT_CHILD, [str(path)], path))
            record = long_token_record(tmp / "long.jsonl")
            cases.append(("rollout record: 4M token ids, routing for one token", ROLLOUT_CHILD, [str(record)], record))
        for name, child, argv, path in cases:
            row = {"case": name, "file_mb": round(path.stat().st_size / MB, 1), "now": run(child, argv, None)}
            if args.old:
                row["before"] = run(child, argv, args.old)
            print(json.dumps(row), flush=True)
        if args.only == "rollouts":
            return
        labels, corpus = label_table(tmp)
        copy_new, copy_old = tmp / "c-new", tmp / "c-old"
        subprocess.run(["cp", "-r", str(corpus), str(copy_new)], check=True)
        subprocess.run(["cp", "-r", str(corpus), str(copy_old)], check=True)
        row = {"case": "label table (CSV)", "file_mb": round(labels.stat().st_size / MB, 1),
               "now": run(LABEL_CHILD, [str(labels), str(copy_new)], None)}
        if args.old:
            row["before"] = run(LABEL_CHILD, [str(labels), str(copy_old)], args.old)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
