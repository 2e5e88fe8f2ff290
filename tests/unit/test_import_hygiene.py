"""The core never imports streamlit, and nothing but the model layer's functions imports torch.

Each module is imported in a fresh interpreter and must not have pulled in streamlit, torch or
transformers (harlequin's test_import_hygiene). The app (horizonlens.app) is the one part that uses
Streamlit, by design.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import horizonlens

MODULES = sorted(m.name for m in pkgutil.walk_packages(horizonlens.__path__, "horizonlens.")
                 if not m.name.startswith(("horizonlens.app", "horizonlens.sample_data"))
                 and not m.name.endswith(".__main__"))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_neither_streamlit_nor_torch(module: str) -> None:
    code = (f"import sys, {module}; "
            "bad = [m for m in ('streamlit', 'torch', 'transformers') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()} at import time"


def test_modules_were_found() -> None:
    assert "horizonlens.query.store" in MODULES and "horizonlens.cli.main" in MODULES


def test_no_generic_top_level_names_are_imported() -> None:
    """Code imports `horizonlens...`, never the folder names `analysis` or `app` (a wheel has neither)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    bad = []
    for path in [*repo.glob("analysis/**/*.py"), *repo.glob("app/**/*.py"), *repo.glob("tests/**/*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import)\s+(analysis|app)(\.|\s|$)", line):
                bad.append(f"{path.relative_to(repo)}:{n}: {line.strip()}")
    assert not bad, bad


def test_test_modules_share_helpers_only_through_support() -> None:
    """No test module imports another test module; what tests share lives in tests/support (or conftest)."""
    import re
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    kinds = "|".join(p.name for p in tests.iterdir() if p.is_dir() and p.name not in ("support", "__pycache__"))
    pattern = re.compile(rf"^\s*(from|import)\s+tests\.({kinds})(\.|\s|$)")
    bad = [f"{path.relative_to(tests)}:{n}: {line.strip()}" for path in tests.rglob("*.py")
           for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.match(line)]
    assert "unit" in kinds and "browser" in kinds
    assert not bad, bad
