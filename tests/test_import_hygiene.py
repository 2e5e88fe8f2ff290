"""analysis/ never imports streamlit; the corpus/metrics core does not import torch either."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import analysis

# The model part imports torch lazily inside functions; importing its modules must still not load it.
MODULES = sorted(m.name for m in pkgutil.walk_packages(analysis.__path__, "analysis."))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_neither_streamlit_nor_torch(module: str) -> None:
    code = (f"import sys, {module}; "
            "bad = [m for m in ('streamlit', 'torch', 'transformers') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()} at import time"


def test_modules_were_found() -> None:
    assert "analysis.corpus.store" in MODULES and "analysis.cli" in MODULES
