"""sgmse (sp-uhh/sgmse, PyPI ``sgmse==0.1.2``, MIT) as a test-only reference: the wheel is fetched with ``pip
download --no-deps`` into ``data_cache/.cache/sgmse`` and only its light modules (``sdes``, ``sampling``) are
imported, never at run time and never as a dependency of edm_se."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SGMSE_VERSION = "0.1.2"


def sgmse_module(name: str):
    """``sgmse.<name>`` from the sgmse wheel; skips the test when the wheel cannot be fetched (no index)."""
    from conftest import shared_lock

    cache = REPO / "data_cache" / ".cache" / "sgmse"
    root = cache / f"sgmse-{SGMSE_VERSION}"
    with shared_lock("sgmse"):
        _fetch(cache, root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"sgmse.{name}")


def _fetch(cache: Path, root: Path) -> None:
    if not (root / "sgmse" / "sdes.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                              f"sgmse=={SGMSE_VERSION}"], capture_output=True, text=True, timeout=300)
        wheels = sorted(cache.glob(f"sgmse-{SGMSE_VERSION}-*.whl"))
        if res.returncode != 0 or not wheels:
            pytest.skip(f"sgmse=={SGMSE_VERSION} cannot be downloaded here: {res.stderr.strip()[-200:]}")
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(tmp)
        tmp.rename(root)  # whole or not at all
