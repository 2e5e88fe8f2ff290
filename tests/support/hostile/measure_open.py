"""Peak memory of opening a corpus whose replay manifest declares a hostile `top_k`, next to a normal open (not a test).

Run: `.venv/bin/python -m tests.support.hostile.measure_open [--old PYTHONPATH] [--top-k 1000]`. Each open runs in a
fresh interpreter that reports its peak RSS (VmHWM from /proc, as measure.py does) and its wall time; the corpus is
a copy of the bundled sample with the `top_k` of its token-tier files changed in the manifest. `--old DIR` also
runs each open with the `horizonlens` found in DIR (e.g. a checkout of an earlier commit), for a before/after
comparison in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from tests.support.corpora import SAMPLE_CORPUS
from tests.support.hostile.measure import child

CHILD = """
import json, re, sys, time
def rss(field):
    return int(re.search(field + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024
t = time.perf_counter()
from horizonlens.query import open_store
out = {'import_rss_mb': rss('VmRSS')}
try:
    store = open_store(sys.argv[1])
    out['open_rss_mb'] = rss('VmRSS')
    out['routing_rows'] = store.scalar("SELECT count(*) FROM routing")
    out['problems'] = [p[-160:] for p in getattr(store, 'problems', [])]
except Exception as exc:  # the peak still counts when the open fails
    out['failed'] = f"{type(exc).__name__}: {str(exc)[:160]}"
out.update(peak_rss_mb=rss('VmHWM'), wall_s=time.perf_counter() - t)
print(json.dumps(out))
"""

def corpus_with_top_k(tmp: Path, top_k: int | None) -> Path:
    """A copy of the sample corpus; `top_k` (if given) written into every token-tier entry of its replay manifest."""
    root = Path(shutil.copytree(SAMPLE_CORPUS, tmp / f"corpus-{top_k}"))
    if top_k is not None:
        path = next((root / "replays").glob("*/manifest.json"))
        manifest = json.loads(path.read_text())
        for f in manifest["files"]:
            if f["table"] in ("routing_tokens", "rollout_tokens"):
                f["meta"]["top_k"] = top_k
        path.write_text(json.dumps(manifest))
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="PYTHONPATH with an earlier horizonlens, run beside the current one")
    ap.add_argument("--top-k", type=int, action="append", help="hostile top_k values (default: 1000)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for top_k in [None, *(args.top_k or [1000])]:
            root = corpus_with_top_k(Path(tmp), top_k)
            row = {"case": "sample as shipped" if top_k is None else f"top_k {top_k} in the replay manifest",
                   "now": child(CHILD, [str(root)], None, timeout=1800)}
            if args.old:
                row["before"] = child(CHILD, [str(root)], args.old, timeout=1800)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
