"""Downstream task models trained by the lab: a keyword classifier and a CTC speech recogniser.

Both follow one contract (``ARCHITECTURE.md``, "Downstream tasks"):

* ``forward(waveform (B, L) float32 at 16 kHz) -> logits``;
* ``per_example_loss(logits, target) -> (B,)`` float32, the loss of each example, so that a paradigm can turn it
  into sample importance (Milling et al. 2024, eq. 2);
* ``predict(logits) -> list`` (labels or texts) and ``metric(predictions, targets) -> dict``.

Targets are :class:`TaskTargets`: class indices (keywords) or transcripts (ASR), one per example.

Sources: M5 (Dai et al. 2017, "Very deep convolutional neural networks for raw waveforms"), the keyword model of
Milling et al. 2024 (Sec. 3.4.1); the CTC recogniser (conv front end + bidirectional GRU over log-mel features,
characters, greedy decoding) follows their ASR model (Sec. 3.4.2) at CPU scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TaskTargets", "TaskModel", "M5", "CTCRecognizer", "CHARS", "encode_text", "greedy_ctc_decode",
           "build_task_model", "TASK_KINDS"]


@dataclass
class TaskTargets:
    """The downstream targets of a batch: ``labels`` (B,) int64 for keywords, or ``texts`` (B strings) for ASR."""

    labels: torch.Tensor | None = None
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0]) if self.labels is not None else len(self.texts)


class TaskModel(nn.Module):
    """Base class of downstream models (see the module docstring)."""

    kind = ""
    sample_rate = 16000

    def per_example_loss(self, logits: torch.Tensor, target: TaskTargets) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> list:  # pragma: no cover
        raise NotImplementedError

    def metric(self, predictions: Sequence, target: TaskTargets) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def config(self) -> dict:
        """The constructor arguments (stored in task checkpoints)."""
        return dict(self._config)  # type: ignore[attr-defined]


class M5(TaskModel):
    """M5 raw-waveform CNN (Dai et al. 2017): four conv1d + batch norm + ReLU + max-pool blocks, global average
    pooling, a linear layer to ``num_classes`` logits.

    Args:
        num_classes: vocabulary size (> 1).
        channels: width of the first block (the second is the same, the last two double it; 32 as in the paper's
            M5 with 0.5 M parameters at 128).
        stride: stride of the first convolution (kernel 80 = 5 ms at 16 kHz).
        norm: ``"batch"`` (the paper's batch norm) or ``"instance"`` (each example's channels normalised over
            time, ``GroupNorm(C, C)``: no running statistics, so no mismatch between the training voices' statistics
            and a new voice's at test time).

    Shapes: ``forward((B, L) float32) -> (B, num_classes)``; ``L`` at least about 0.1 s.

    Raises:
        ValueError: ``num_classes < 2`` or an unknown ``norm``.
    """

    kind = "keyword"
    NORMS = ("batch", "instance")

    def __init__(self, num_classes: int, channels: int = 32, stride: int = 4, norm: str = "batch") -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if norm not in self.NORMS:
            raise ValueError(f"norm must be one of {self.NORMS}, got {norm!r}")
        self._config = {"num_classes": int(num_classes), "channels": int(channels), "stride": int(stride),
                        "norm": str(norm)}
        c = int(channels)
        widths = [(1, c, 80, stride), (c, c, 3, 1), (c, 2 * c, 3, 1), (2 * c, 2 * c, 3, 1)]
        layers: list[nn.Module] = []
        for cin, cout, k, s in widths:
            layers += [nn.Conv1d(cin, cout, k, stride=s, padding=k // 2),
                       nn.BatchNorm1d(cout) if norm == "batch" else nn.GroupNorm(cout, cout), nn.ReLU(),
                       nn.MaxPool1d(4, ceil_mode=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, int(num_classes))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, L), got {tuple(waveform.shape)}")
        x = waveform.float()
        x = x / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)  # level-invariant, like the enhancer
        h = self.features(x[:, None])
        return self.head(h.mean(dim=-1))

    def per_example_loss(self, logits, target):
        if target.labels is None:
            raise ValueError("M5 needs class labels")
        return F.cross_entropy(logits.float(), target.labels.to(logits.device), reduction="none")

    def predict(self, logits):
        return logits.argmax(dim=-1).tolist()

    def metric(self, predictions, target):
        labels = target.labels.tolist() if target.labels is not None else []
        correct = sum(int(p == t) for p, t in zip(predictions, labels))
        return {"accuracy": correct / max(len(labels), 1)}


# ----------------------------------------------------------------------------------------------- CTC
CHARS = " abcdefghijklmnopqrstuvwxyz'"
"""The recogniser's alphabet; index 0 of the output is CTC's blank, index i + 1 is ``CHARS[i]``."""


def encode_text(text: str) -> list[int]:
    """Characters of the normalised text (:func:`edm_se.asr.normalise_text`) as label indices (1..len(CHARS))."""
    from edm_se.asr import normalise_text

    return [CHARS.index(ch) + 1 for ch in normalise_text(text) if ch in CHARS]


def greedy_ctc_decode(indices: Sequence[int]) -> str:
    """Best-path decoding: merge repeats, drop blanks (0)."""
    out, prev = [], -1
    for i in indices:
        i = int(i)
        if i != prev and i != 0:
            out.append(CHARS[i - 1])
        prev = i
    return " ".join("".join(out).split())


class CTCRecognizer(TaskModel):
    """Small character CTC acoustic model: log-mel features (25 ms / 10 ms, ``n_mels`` bands), two strided conv1d
    layers (time / 4), a bidirectional GRU, a linear layer to ``len(CHARS) + 1`` outputs (blank first).

    Args:
        n_mels: mel bands of the front end.
        channels: conv width.
        hidden: GRU hidden size per direction.
        layers: GRU layers.
        freq_masks, time_masks: SpecAugment (Park et al. 2019, "SpecAugment", policy without time warping) in
            training mode only: that many frequency / time masks per example on the normalised log-mel features
            (set to 0, their mean); 0 and 0 (the default) turn it off. Drawn from torch's global generator.
        freq_mask_width: the largest frequency mask, in mel bands (F of the paper).
        time_mask_width: the largest time mask, in 10 ms frames (T of the paper).

    Shapes: ``forward((B, L)) -> (B, T', len(CHARS) + 1)`` log-probabilities, ``T' = ceil(ceil(L / 160 + 1) / 4)``.

    Raises:
        ValueError: a negative mask count or width, or a frequency mask wider than ``n_mels``.
    """

    kind = "asr"

    def __init__(self, n_mels: int = 40, channels: int = 96, hidden: int = 128, layers: int = 2,
                 freq_masks: int = 0, time_masks: int = 0, freq_mask_width: int = 8,
                 time_mask_width: int = 20) -> None:
        super().__init__()
        import torchaudio

        for key, v in (("freq_masks", freq_masks), ("time_masks", time_masks),
                       ("freq_mask_width", freq_mask_width), ("time_mask_width", time_mask_width)):
            if int(v) < 0:
                raise ValueError(f"{key} must be >= 0, got {v}")
        if int(freq_mask_width) > int(n_mels):
            raise ValueError(f"freq_mask_width={freq_mask_width} exceeds n_mels={n_mels}")
        self._config = {"n_mels": int(n_mels), "channels": int(channels), "hidden": int(hidden),
                        "layers": int(layers), "freq_masks": int(freq_masks), "time_masks": int(time_masks),
                        "freq_mask_width": int(freq_mask_width), "time_mask_width": int(time_mask_width)}
        self.freq_masking = torchaudio.transforms.FrequencyMasking(int(freq_mask_width), iid_masks=True)
        self.time_masking = torchaudio.transforms.TimeMasking(int(time_mask_width), iid_masks=True)
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, win_length=400,
                                                        hop_length=160, n_mels=int(n_mels))
        self.norm = nn.LayerNorm(int(n_mels))
        self.conv = nn.Sequential(nn.Conv1d(n_mels, channels, 5, stride=2, padding=2), nn.GELU(),
                                  nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.GELU())
        self.rnn = nn.GRU(channels, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(CHARS) + 1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, L), got {tuple(waveform.shape)}")
        x = waveform.float()
        x = x / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
        feats = torch.log(self.mel(x) + 1e-6)  # (B, n_mels, T)
        feats = self.norm(feats.transpose(1, 2)).transpose(1, 2)
        if self.training and (self._config["freq_masks"] or self._config["time_masks"]):
            feats = self.spec_augment(feats)
        h = self.conv(feats).transpose(1, 2)  # (B, T', C)
        h, _ = self.rnn(h)
        return self.out(h).log_softmax(dim=-1)

    def spec_augment(self, feats: torch.Tensor) -> torch.Tensor:
        """SpecAugment masks on normalised features ``(B, n_mels, T)``: masked cells set to 0 (their mean after the
        layer norm), each example its own masks."""
        x = feats[:, None]  # (B, 1, F, T): torchaudio draws iid masks per example and channel of a 4-d input
        for _ in range(self._config["freq_masks"]):
            x = self.freq_masking(x, 0.0)
        for _ in range(self._config["time_masks"]):
            x = self.time_masking(x, 0.0)
        return x[:, 0]

    def per_example_loss(self, logits, target):
        """CTC loss of each example divided by its number of target characters (so long and short utterances weigh
        alike); an empty transcript costs the loss of emitting only blanks."""
        if not target.texts:
            raise ValueError("CTCRecognizer needs transcripts")
        encoded = [encode_text(t) for t in target.texts]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        flat = torch.tensor([i for e in encoded for i in e], dtype=torch.long)
        batch, frames = logits.shape[0], logits.shape[1]
        in_lengths = torch.full((batch,), frames, dtype=torch.long)
        loss = F.ctc_loss(logits.float().transpose(0, 1).cpu() if logits.device.type == "mps" else
                          logits.float().transpose(0, 1), flat.to(logits.device), in_lengths.to(logits.device),
                          lengths.to(logits.device), blank=0, reduction="none", zero_infinity=True)
        return loss / lengths.clamp_min(1).to(loss.device, loss.dtype)

    def predict(self, logits):
        return [greedy_ctc_decode(row.tolist()) for row in logits.argmax(dim=-1)]

    def metric(self, predictions, target):
        """Corpus WER and character error rate in percent (jiwer, on :func:`edm_se.asr.normalise_text`)."""
        import jiwer

        from edm_se.asr import corpus_wer, normalise_text

        refs = [normalise_text(t) for t in target.texts]
        hyps = [normalise_text(p) for p in predictions]
        return {"wer": float(corpus_wer(list(target.texts), list(predictions))),
                "cer": 100.0 * float(jiwer.cer(refs, hyps))}


TASK_KINDS = {"m5": M5, "ctc": CTCRecognizer}


def build_task_model(name: str, **kwargs) -> TaskModel:
    """``"m5"`` or ``"ctc"`` with its constructor arguments.

    Raises:
        ValueError: unknown name.
    """
    if name not in TASK_KINDS:
        raise ValueError(f"unknown task model {name!r}; choose from {sorted(TASK_KINDS)}")
    return TASK_KINDS[name](**kwargs)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

