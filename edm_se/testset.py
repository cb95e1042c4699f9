"""Fixed paired test sets (``clean/`` + ``noisy/`` + optional ``manifest.csv``) and their content identity."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from edm_se.audio import AUDIO_SUFFIXES, MAX_LENGTH_MISMATCH

log = logging.getLogger("edm_se.study")


# (clean, noisy) sub-directories of a test set: edm_se's own layout, and VoiceBank-DEMAND's as it is downloaded
LAYOUTS = (("clean", "noisy"), ("clean_testset_wav", "noisy_testset_wav"))


@dataclass
class TestSet:
    """A fixed paired test set: ``clean/`` and ``noisy/`` files with the same names, optional SNR per file.

    Attributes:
        root: the directory.
        names: file names (relative to the clean and noisy sub-directories), sorted.
        snr_db: SNR in dB of each mixture (None where the manifest does not say).
        transcripts: the words spoken in each file (None where unknown), for the WER metrics.
        clean_dir, noisy_dir: the sub-directories' names (:data:`LAYOUTS`: ``clean``/``noisy``, or
            VoiceBank-DEMAND's ``clean_testset_wav``/``noisy_testset_wav``).
    """

    root: Path
    names: list[str]
    snr_db: list[float | None]
    transcripts: list[str | None] | None = None
    clean_dir: str = "clean"
    noisy_dir: str = "noisy"

    def has_transcripts(self) -> bool:
        """Whether every file has a non-empty transcript (what the WER metrics need)."""
        return bool(self.transcripts) and all(t for t in self.transcripts)  # type: ignore[union-attr]

    __test__ = False  # not a pytest test class

    def clean(self, name: str) -> Path:
        return self.root / self.clean_dir / name

    def noisy(self, name: str) -> Path:
        return self.root / self.noisy_dir / name

    def identity(self) -> dict:
        """``{"root", "names", "n", "sha256"}``: where it is and what it holds (SHA-256 over the names and the bytes
        of every clean and noisy file, :func:`edm_se.provenance.files_sha256`), so an edited file is noticed."""
        from edm_se.provenance import files_sha256

        import hashlib
        import json

        rel = [f"{self.clean_dir}/{n}" for n in self.names] + [f"{self.noisy_dir}/{n}" for n in self.names]
        out = {"root": str(self.root), "names": list(self.names), "n": len(self.names),
               "sha256": files_sha256(self.root, rel)}
        if self.transcripts and any(self.transcripts):
            text = json.dumps(list(self.transcripts), ensure_ascii=False).encode("utf-8")
            out["transcripts_sha256"] = hashlib.sha256(text).hexdigest()
        return out

    def check_audio(self, sample_rate: int = 16000, max_length_mismatch: float = MAX_LENGTH_MISMATCH) -> None:
        """Read every clean and noisy file once (about 1 ms a file), so that a study refuses a test set with an
        unreadable, empty, silent or too short file, or a pair that cannot be one recording, before its cells (each
        of which failed on the file, or scored the pair's first samples alone).

        Args:
            sample_rate: rate the files are read at, in Hz.
            max_length_mismatch: the largest length difference of a clean/noisy pair, as a fraction of the longer
                (the rule of ``edm-se evaluate``); a smaller one is scored on the common length, with a warning.

        Raises:
            edm_se.audio.AudioError: the first such file, named (:func:`edm_se.audio.load_audio`), or a pair whose
                lengths differ by more than ``max_length_mismatch``.
        """
        from edm_se.audio import AudioError, lengths_too_different, load_audio

        for name in self.names:
            clean = load_audio(self.clean(name), sample_rate=sample_rate).numel()
            noisy = load_audio(self.noisy(name), sample_rate=sample_rate).numel()
            if clean != noisy:
                if lengths_too_different([clean, noisy], max_length_mismatch):
                    raise AudioError(self.noisy(name), f"its length differs from its clean reference's by more than "
                                     f"{max_length_mismatch:.0%} ({clean}/{noisy} samples at {sample_rate} Hz: "
                                     "clean/noisy); not the same recording?")
                log.warning("%s: clean and noisy lengths differ (%d/%d samples); scored on the first %d", name, clean,
                            noisy, min(clean, noisy))

    def kept(self, k: int) -> list[str]:
        """``k`` file names spread evenly over the (sorted) test set: the files whose audio is kept."""
        n = len(self.names)
        if k <= 0 or n == 0:
            return []
        if k >= n:
            return list(self.names)
        return [self.names[round(i * (n - 1) / (k - 1))] if k > 1 else self.names[0] for i in range(k)]


def load_test_set(path: str | os.PathLike | None = None, max_files: int | None = None) -> TestSet:
    """Read a paired test-set directory (``clean/``, ``noisy/``, optional ``manifest.csv``), or a VoiceBank-DEMAND
    directory as it is downloaded (``clean_testset_wav/``, ``noisy_testset_wav/``, ``testset_txt/``).

    Args:
        path: the directory; None: ``edm_se.data.builtin_test_set()``.
        max_files: keep only the first N files (sorted by name).

    Returns:
        :class:`TestSet`. The SNR of a file comes from a manifest column named ``snr_db`` (or ``snr``), its
        transcript from a column ``transcript`` (or ``text``), matched by a column holding the file name (``name``,
        ``file``, ``noisy`` or ``path``; with or without suffix). Where the manifest gives no transcript, a text file
        ``txt/<stem>.txt`` or ``testset_txt/<stem>.txt`` (VoiceBank-DEMAND's layout, read as-is) supplies it.

    Raises:
        edm_se.audio.AudioError: the directory or its clean / noisy sub-directories (either layout) are missing,
            no noisy file has a clean reference, or ``manifest.csv`` is not UTF-8 CSV.
    """

    from edm_se.audio import AudioError

    if path is None:
        from edm_se.data import builtin_test_set

        path = builtin_test_set()
        if not isinstance(path, (str, os.PathLike)):  # an object describing the set
            path = getattr(path, "root")
    root = Path(path).expanduser().resolve()
    layout = next(((c, n) for c, n in LAYOUTS if (root / c).is_dir() and (root / n).is_dir()), None)
    if layout is None:
        raise AudioError(f"{root}: not a test set (expected clean/ and noisy/ with audio files, plus manifest.csv; "
                         "or VoiceBank-DEMAND's clean_testset_wav/ and noisy_testset_wav/)")
    clean_dir, noisy_dir = layout
    noisy = {p.relative_to(root / noisy_dir).as_posix() for p in (root / noisy_dir).rglob("*")
             if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES}
    names = sorted(n for n in noisy if (root / clean_dir / n).is_file())
    if not names:
        raise AudioError(f"{root}: no noisy file has a clean reference of the same name in {clean_dir}/")
    if len(names) < len(noisy):
        log.warning("%s: %d noisy file(s) without a clean reference are ignored", root, len(noisy) - len(names))
    if max_files is not None:
        names = names[: int(max_files)]
    snr: dict[str, float] = {}
    for n, row in _manifest_rows(root / "manifest.csv", names).items():
        value = row.get("snr_db", row.get("snr"))
        try:
            snr[n] = float(value)
        except (TypeError, ValueError):
            continue
        if math.isnan(snr[n]):  # `nan` is no SNR: each NaN made a per-SNR group of its own, all named "nan"
            del snr[n]
    text = read_transcripts(root, names)
    transcripts = [text.get(n) for n in names] if text else None
    return TestSet(root=root, names=names, snr_db=[snr.get(n) for n in names], transcripts=transcripts,
                   clean_dir=clean_dir, noisy_dir=noisy_dir)


def write_subset(test_set: TestSet, names: list[str], out_dir: str | os.PathLike, note: dict) -> Path:
    """Write the mixtures ``names`` of ``test_set`` as a test set of their own: ``clean/`` and ``noisy/`` (the files
    copied byte for byte, so their part of the SHA-256 is the same), ``manifest.csv`` (``name``, ``snr_db``,
    ``transcript`` where known) and ``note`` as ``subset.json``. Made in a temporary directory beside ``out_dir``,
    then renamed into place: an interrupted write leaves nothing at ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists (a test set is never written over).
        ValueError: ``names`` is empty or names a file that is not in ``test_set``.
    """
    import csv
    import io
    import json
    import shutil

    from edm_se.atomic import atomic_dir

    out = Path(out_dir).expanduser()
    if out.exists():
        raise FileExistsError(f"{out}: exists; a test set is never written over (name another directory)")
    index = {n: i for i, n in enumerate(test_set.names)}
    unknown = [n for n in names if n not in index]
    if not names or unknown:
        raise ValueError("a subset needs names of the test set's files (none given)" if not names else
                         f"{unknown[0]}: not a file of {test_set.root}")
    with atomic_dir(out) as tmp:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "snr_db", "transcript"])
        for n in names:
            for sub, src in (("clean", test_set.clean(n)), ("noisy", test_set.noisy(n))):
                (tmp / sub / n).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / sub / n)
            i = index[n]
            snr = test_set.snr_db[i]
            text = test_set.transcripts[i] if test_set.transcripts else None
            writer.writerow([n, "" if snr is None else f"{snr:g}", text or ""])
        (tmp / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "subset.json").write_text(json.dumps(note, indent=1) + "\n", encoding="utf-8")
    return out


def read_transcripts(source: str | os.PathLike, keys: list[str]) -> dict[str, str]:
    """Reference transcripts for the files ``keys`` (relative paths, with or without suffix) from ``source``:

    * a CSV file with a ``transcript`` (or ``text``) column and a column naming the file (``name``, ``file``,
      ``noisy``, ``path``), e.g. a test set's ``manifest.csv``;
    * a directory of ``<stem>.txt`` files (VoiceBank-DEMAND's ``testset_txt/``), read as-is;
    * a test-set directory holding either (``manifest.csv``, ``txt/``, ``testset_txt/``).

    Returns:
        ``{key: text}`` for the keys found (possibly empty).

    Raises:
        edm_se.audio.AudioError: ``source`` does not exist, or a CSV file there is not UTF-8 CSV.
    """
    from edm_se.audio import AudioError

    src = Path(source).expanduser()
    if not src.exists():
        raise AudioError(src, "no such transcripts file or directory")
    out: dict[str, str] = {}
    if src.is_file():
        rows = _manifest_rows(src, keys)
        if rows and not any(c in next(iter(rows.values())) for c in ("transcript", "text")):
            raise AudioError(src, "has no `transcript` (or `text`) column")
        return _texts(rows)
    if (src / "manifest.csv").is_file():
        out.update(_texts(_manifest_rows(src / "manifest.csv", keys)))
    for sub in (src, src / "txt", src / "testset_txt"):
        for k in keys:
            f = sub / Path(k).with_suffix(".txt")
            if k not in out and f.is_file():
                out[k] = f.read_text(encoding="utf-8", errors="replace").strip()
    return out


def _manifest_rows(manifest: Path, keys: list[str]) -> dict[str, dict]:
    """``{key: row}`` of a CSV manifest, a row matched to a key by any column naming the file (``name``, ``file``,
    ``noisy``, ``path``, ``noisy_path``; with or without directories and suffix). Empty when the file is missing."""
    import csv
    import io

    from edm_se.audio import AudioError

    if not manifest.is_file():
        return {}
    data = manifest.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: the byte-order mark a spreadsheet may write
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise AudioError(manifest, f"not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); save it as "
                         "UTF-8") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise AudioError(manifest, f"not a readable CSV file ({err})") from None
    lookup: dict[str, str] = {}
    for k in keys:
        for alias in (k, Path(k).with_suffix("").as_posix(), Path(k).name, Path(k).stem):
            lookup.setdefault(alias, k)
    out: dict[str, dict] = {}
    for row in rows:
        for col in ("name", "file", "noisy", "path", "noisy_path"):
            value = row.get(col) or ""
            k = (lookup.get(value) or lookup.get(Path(value).with_suffix("").as_posix())
                 or lookup.get(Path(value).name) or lookup.get(Path(value).stem)) if value else None
            if k is not None:
                out.setdefault(k, row)
                break
    return out


def _texts(rows: dict[str, dict]) -> dict[str, str]:
    """The non-empty ``transcript`` (or ``text``) of each matched manifest row."""
    out = {}
    for k, row in rows.items():
        text = (row.get("transcript") or row.get("text") or "").strip()
        if text:
            out[k] = text
    return out
