"""The package as a user installs it: one import name, sample data inside, `serve` from an empty directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from horizonlens.bench.browser import free_port
from tests.support.corpora import REPO


def test_every_source_folder_is_a_package() -> None:
    """The wheel's packages are found, not listed: every folder of Python files under analysis/horizonlens (and
    app/, reached through its link) has an __init__.py, so setuptools' find includes it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["where"] == ["analysis"]
    root = REPO / "analysis" / "horizonlens"
    assert (root / "app").resolve() == (REPO / "app").resolve()  # the pages stay in app/, as the design card says
    assert (root / "sample_data").resolve() == (REPO / "sample_data").resolve()
    sources = [*root.rglob("*.py"), *(REPO / "app").rglob("*.py")]  # rglob does not follow the app/ link
    missing = sorted(str(folder.relative_to(REPO)) for folder in {f.parent for f in sources}
                     if not (folder / "__init__.py").exists())
    assert not missing, f"folders of Python files without __init__.py (left out of the wheel): {missing}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, timeout=600)
    return next(out.glob("horizonlens-*.whl"))


def test_wheel_holds_one_top_level_name_and_the_sample_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"horizonlens"}, tops
    for needed in ("horizonlens/app/main.py", "horizonlens/app/app_pages/explore.py",
                   "horizonlens/sample_data/corpus/manifest.json", "horizonlens/sample_data/checkpoint/config.json",
                   "horizonlens/sample_data/checkpoint/model.safetensors", "horizonlens/py.typed"):
        assert needed in names, needed


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # the same pinned CPU wheel as the Makefile, so pip never pulls a CUDA build
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, str(wheel)], check=True, timeout=1800)
    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HORIZONLENS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    proc = subprocess.Popen([str(venv / "bin" / "horizonlens"), "serve", "--port", str(port)], cwd=empty, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    healthy = resp.read().decode().strip() == "ok"
                    break
            except OSError:
                time.sleep(0.5)
        assert healthy, proc.stdout.read() if proc.poll() is not None and proc.stdout else "no health answer"
        copies = list((home / "data" / "horizonlens").glob("sample-corpus-*/manifest.json"))
        assert len(copies) == 1  # the sample corpus was copied to the user's data directory on first use
        assert list(empty.iterdir()) == []  # nothing was written where the user stood
    finally:
        proc.send_signal(signal.SIGTERM)  # the server is the `serve` process itself: SIGTERM stops it
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"serve did not stop on SIGTERM within 60 s:\n{out[-2000:]}")
    assert "First use: copying the bundled sample corpus" in out
