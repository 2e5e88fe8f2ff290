"""The store's DuckDB connection: private spill folder and settings on opening, locked down once the views exist."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import duckdb

from horizonlens.storage.location import CorpusPath, ObjectPath
from horizonlens.storage.quoting import sql_string

SPILL_PREFIX = "horizonlens-duckdb-"


def _sweep_spill_dirs() -> None:
    """Remove the spill folders of processes that are gone (a killed server never ran its finalizers)."""
    for old in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*-*"):
        pid = old.name[len(SPILL_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except OSError:  # alive, or another user's process: not ours to remove
            continue


def connect(owner: object, memory_limit: str, threads: int | None) -> tuple[duckdb.DuckDBPyConnection, Path, Any]:
    """An in-memory connection, its private spill folder, and the finalizer that removes the folder with `owner`."""
    # DuckDB may always read its temp directory, by default `<cwd>/.tmp/`, where anyone could plant a file: spill
    # to a private folder instead (mode 0700, removed on close; named by pid, so a later process can remove the
    # folders of one that was killed)
    _sweep_spill_dirs()
    spill_dir = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-"))
    remove = weakref.finalize(owner, shutil.rmtree, spill_dir, ignore_errors=True)
    con = duckdb.connect(":memory:", config={"temp_directory": str(spill_dir)})
    con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # keep Parquet footers in memory between queries: opening one trajectory then costs no footer reads
    con.execute("SET parquet_metadata_cache = true")
    # large scans (distinct tool names, window functions over all checks) need not keep row order; this keeps them
    # inside the memory limit on a 1M-trajectory corpus
    con.execute("SET preserve_insertion_order = false")
    return con, spill_dir, remove


def harden(con: duckdb.DuckDBPyConnection, root: CorpusPath) -> None:
    """From now on only the corpus directory (and the spill folder) is readable from SQL, and nothing can change that.

    In object storage no file at all is: the views read through registered datasets.
    """
    allowed = "" if isinstance(root, ObjectPath) else sql_string(str(root) + "/")
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
