"""``edm-se plot``: a study's figures, drawn from its ``results.csv`` alone (redrawable without re-running).

Figures (PNG and PDF, next to ``results.csv`` unless ``output=DIR``):

* ``metric_vs_nfe``: one panel per metric (PESQ, ESTOI, SI-SDR in dB, the recognisers' WER (lower is better),
  DNSMOS when present), one line per sampler or design cell, shaded 95% confidence bands, log2 NFE axis labelled
  1, 2, 4, ..., and labelled horizontal reference lines: the noisy input (dashed), the clean reference (dotted, WER
  panels: the recogniser's floor) and each pretrained peer (DeepFilterNet3, RNNoise, noisereduce; dash-dot). When the NFE is constant within every line (the ``t_start``
  study) the x axis is the swept parameter instead (``metric_vs_t_start``).
* ``metric_vs_rtf``: the same against the measured real-time factor (wall time / audio duration, log axis); here
  each peer is a star at its own real-time factor.
* ``spectrograms``: clean / noisy / enhanced at a few NFE for one kept test file (needs the study's ``audio/``
  directories beside ``results.csv``; skipped with a notice otherwise).

All drawing uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from edm_se.study_common import METRIC_ORDER, X_CANDIDATES, metric_sort_key  # noqa: E402,F401 (re-exported)

log = logging.getLogger("edm_se.plots")

#: Metric panels side by side in one row of a figure; more metrics wrap into rows of equal length.
MAX_PANELS_PER_ROW = 4

METRIC_LABELS = {
    "pesq": "PESQ (wide band, MOS 1-4.6)",
    "estoi": "ESTOI (0-1)",
    "si_sdr": "SI-SDR (dB)",
    "dnsmos_ovrl": "DNSMOS OVRL (MOS 1-5)",
    "dnsmos_sig": "DNSMOS SIG (MOS 1-5)",
    "dnsmos_bak": "DNSMOS BAK (MOS 1-5)",
    "dnsmos_p808": "DNSMOS P.808 (MOS 1-5)",
    "wer": "WER (%), lower is better",
    "wer_whisper": "WER (%), lower is better",
    "wer_sphinx": "WER (%), lower is better",
}
METRIC_TITLES = {"pesq": "PESQ", "estoi": "ESTOI", "si_sdr": "SI-SDR", "wer": "WER",
                 "wer_whisper": "WER, Whisper tiny.en ↓", "wer_sphinx": "WER, PocketSphinx ↓"}
# Reference lines drawn in every panel (results.csv rows of these kinds): style per kind; peers get one colour each.
REFERENCE_STYLE = {"noisy": dict(color="0.35", ls="--", lw=1.3), "clean": dict(color="0.1", ls=":", lw=1.4)}
PEER_COLORS = ("#b8860b", "#8b008b", "#2f4f4f", "#a0522d")
X_LABELS = {
    "nfe": "NFE (network calls per file)",
    "t_start": "t_start (start time of reverse process)",
    "s_churn": "s_churn (EDM stochasticity)",
    "s_noise": "s_noise (EDM noise inflation)",
    "oa_weight": "oa_weight (share of the noisy input added back)",
    "rtf": "real-time factor (log scale)",
}
# Columns that can tell lines apart, in the order used for labels.
LINE_KEYS = ("design", "sampler", "s_churn", "s_noise", "t_start", "oa_weight", "sde", "precond")


# ----------------------------------------------------------------------------------------------- data
def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``results.csv`` written by :func:`edm_se.study.gather`.

    ``path`` may also be the study's directory (its ``results.csv`` is read).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a CSV, or lacks the columns ``kind, metric, mean``.
    """
    path = Path(path)
    if path.is_dir() and (path / "results.csv").is_file():
        path = path / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file (run `edm-se study` first)")
    try:
        frame = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a study results.csv ({type(err).__name__})") from None
    missing = [c for c in ("kind", "metric", "mean") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a study results.csv (missing columns {missing})")
    for col in ("snr_db", "ci95", "delta_mean", "delta_ci95", "nfe", "rtf", "num_steps", "s_churn", "s_noise",
                "t_start", "oa_weight"):
        if col not in frame.columns:
            frame[col] = np.nan
    for col in ("design", "sampler", "sde", "precond", "study", "cell", "audio"):
        if col not in frame.columns:
            frame[col] = None
    return frame


def overall(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows over the whole test set (not the per-SNR rows)."""
    return frame[frame["snr_db"].isna()]


def metrics_present(frame: pd.DataFrame, wanted: Sequence[str] | None = None) -> list[str]:
    """Metrics of the finished cells, in the order PESQ, ESTOI, SI-SDR, DNSMOS, then the rest alphabetically; or
    those of ``wanted``, in its order.

    Raises:
        ValueError: a metric of ``wanted`` has no finished cell (naming those the table has).
    """
    cells = frame[(frame["kind"] == "cell") & frame["mean"].notna()]
    have = sorted(dict.fromkeys(cells["metric"].dropna()), key=metric_sort_key)
    if wanted:
        missing = [m for m in wanted if m not in have]
        if missing and have:
            raise ValueError(f"metrics={list(wanted)}: no finished cell has {', '.join(missing)} (the results have "
                             f"{', '.join(have)})")
        return [m for m in wanted if m in have]
    return have


def choose_x(frame: pd.DataFrame, x: str = "auto") -> str:
    """The x-axis column: ``x`` itself, or (``auto``) NFE unless it is constant within every line, in which case
    the first of ``t_start, s_churn, s_noise, oa_weight`` that varies."""
    if x != "auto":
        if x not in frame.columns:
            raise ValueError(f"x={x!r} is not a column of results.csv")
        return x
    cells = frame[frame["kind"] == "cell"]
    for cand in X_CANDIDATES:
        if cand not in cells.columns or cells[cand].nunique(dropna=True) <= 1:
            continue
        keys = [k for k in LINE_KEYS if k != cand and cells[k].nunique(dropna=True) > 1]
        groups = cells.groupby(keys, dropna=False) if keys else [(None, cells)]
        if any(g[cand].nunique(dropna=True) > 1 for _, g in groups):
            return cand
    return "nfe"


def line_keys(frame: pd.DataFrame, x: str) -> list[str]:
    """Columns whose values tell the plotted lines apart (those that vary, minus the x axis). Against a swept
    parameter (``t_start``, ``oa_weight``, ...) the NFE is one of them: points at different NFE are not one curve."""
    cells = frame[frame["kind"] == "cell"]
    candidates = (*LINE_KEYS, "nfe") if x not in ("nfe", "rtf") else LINE_KEYS
    keys = [k for k in candidates if k != x and k in cells.columns and cells[k].nunique(dropna=True) > 1]
    if "design" in keys:  # a design cell fixes its SDE and preconditioning
        keys = [k for k in keys if k not in ("sde", "precond")]
    # drop keys that the others already determine (e.g. s_churn when every sampler has one fixed value)
    for key in list(reversed(keys)):
        rest = [k for k in keys if k != key]
        if rest and len(cells.groupby(rest, dropna=False)) == len(cells.groupby(keys, dropna=False)):
            keys = rest
    if not keys:
        keys = ["sampler"] if cells["sampler"].notna().any() else ["cell"]
    return keys


def _fmt_value(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""  # the parameter does not apply to this line (e.g. s_churn of PC)
    if key in ("design", "sampler", "cell"):
        return str(value)
    if isinstance(value, float):
        return f"{key}={value:g}"
    return f"{key}={value}"


def add_line_labels(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """A copy of the cell rows with a ``line`` column (e.g. ``edm_heun_churn, s_churn=0.5``)."""
    keys = line_keys(frame, x)
    cells = frame[frame["kind"] == "cell"].copy()
    cells["line"] = [", ".join(v for v in (_fmt_value(k, row[k]) for k in keys) if v) or "-"
                     for _, row in cells.iterrows()]
    return cells


# ----------------------------------------------------------------------------------------------- axes helpers
def _log2_axis(ax: Any, values: np.ndarray) -> None:
    """Log base-2 axis with ticks 1, 2, 4, ... labelled as plain integers."""
    ax.set_xscale("log", base=2)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    ticks = [2.0 ** k for k in range(int(math.floor(math.log2(max(lo, 1e-9)))),
                                     int(math.ceil(math.log2(max(hi, 1e-9)))) + 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlim(lo / 2 ** 0.35, hi * 2 ** 0.35)


def _log10_axis(ax: Any, values: np.ndarray) -> None:
    ax.set_xscale("log")
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    ax.set_xlim(lo / 10 ** 0.15, hi * 10 ** 0.15)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def _save(fig: Any, base: Path, formats: Sequence[str]) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        from edm_se.atomic import atomic_path

        path = base.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=fmt)
        out.append(path)
    return out


def _study_name(frame: pd.DataFrame) -> str:
    names = frame["study"].dropna().unique() if "study" in frame.columns else []
    return str(names[0]) if len(names) else "study"


def _n_files(frame: pd.DataFrame) -> str:
    n = frame["n"].dropna() if "n" in frame.columns else pd.Series([], dtype=float)
    return f"{int(n.max())} test files" if len(n) else "test files"


# ----------------------------------------------------------------------------------------------- figures
def plot_metric_curves(frame: pd.DataFrame, x: str = "nfe", metrics: Sequence[str] | None = None,
                       title: str | None = None, delta: bool = False) -> Any:
    """Metric vs ``x`` (one panel per metric, one line per sampler / design cell, shaded 95% CI).

    Args:
        frame: a results table (see :func:`load_results`).
        x: the x column (``nfe``: log2 axis; ``rtf``: log10 axis; others linear).
        metrics: which metrics (None: all present).
        delta: plot the paired per-file improvement over the noisy input (``delta_mean`` ± ``delta_ci95``)
            instead of the scores; the noisy input is the zero line.

    Returns:
        The matplotlib Figure (axes in ``fig.axes``, one per metric; the legend is outside the panels).

    Raises:
        ValueError: the table has no finished cell with a value of ``x``.
    """
    rows = overall(frame)
    metrics = metrics_present(rows, metrics)
    cells = add_line_labels(rows, x)
    cells = cells[cells[x].notna() & cells["metric"].isin(metrics)]
    if delta:
        cells = cells[cells["delta_mean"].notna()].assign(mean=lambda f: f["delta_mean"],
                                                          ci95=lambda f: f["delta_ci95"])
    if cells.empty or not metrics:
        raise ValueError(f"no finished cell with a value of {x!r} to plot")
    refs = rows[rows["kind"].isin(["noisy", "clean", "peer"])]
    peers = sorted(refs[refs["kind"] == "peer"]["cell"].dropna().unique())
    lines = list(dict.fromkeys(cells.sort_values(["line"], kind="stable")["line"]))
    colors = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    markers = "osD^v<>pP*Xh"
    # up to MAX_PANELS_PER_ROW panels in a row; more wrap into balanced rows (6 metrics: 2 rows of 3)
    nrows = math.ceil(len(metrics) / MAX_PANELS_PER_ROW)
    ncols = math.ceil(len(metrics) / nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.7 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(metrics):]:
        fig.delaxes(ax)
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes.flat, metrics):
        sub = cells[cells["metric"] == metric]
        for i, line in enumerate(lines):
            grp = sub[sub["line"] == line].sort_values(x)
            if grp.empty:
                continue
            xs, ys = grp[x].to_numpy(float), grp["mean"].to_numpy(float)
            ci = grp["ci95"].to_numpy(float)
            color = colors(i % colors.N)
            (h,) = ax.plot(xs, ys, marker=markers[i % len(markers)], ms=4.5, lw=1.6, color=color, label=line)
            ok = np.isfinite(ci)
            if ok.any():
                ax.fill_between(xs[ok], (ys - ci)[ok], (ys + ci)[ok], color=color, alpha=0.12, lw=0)
            handles.setdefault(line, h)
        for r in refs[refs["metric"] == metric].itertuples():
            value = r.delta_mean if delta else r.mean
            if r.kind == "noisy" and delta:
                value = 0.0
            if value is None or not np.isfinite(float(value)):
                continue
            if r.kind == "peer":
                color = PEER_COLORS[peers.index(r.cell) % len(PEER_COLORS)]
                if x == "rtf" and r.rtf is not None and np.isfinite(float(r.rtf)) and float(r.rtf) > 0:
                    # against cost, a peer is a point: its quality at its own real-time factor
                    (h,) = ax.plot([float(r.rtf)], [float(value)], ls="none", marker="*", ms=11, color=color,
                                   label=str(r.cell))
                    handles.setdefault(str(r.cell), h)
                    continue
                style = dict(color=color, ls="-.", lw=1.3)
            else:
                style = REFERENCE_STYLE[r.kind]
            h = ax.axhline(float(value), label=str(r.cell), **style)
            handles.setdefault(str(r.cell), h)
        xv = sub[x].to_numpy(float)
        if x == "rtf":  # the peers' stars must be inside the axis too
            peer_rtf = refs[(refs["kind"] == "peer") & (refs["metric"] == metric)]["rtf"].to_numpy(float)
            xv = np.concatenate([xv, peer_rtf[np.isfinite(peer_rtf) & (peer_rtf > 0)]])
        if x == "nfe":
            _log2_axis(ax, xv)
        elif x == "rtf":
            _log10_axis(ax, xv)
        ax.set_xlabel(X_LABELS.get(x, x))
        label = METRIC_LABELS.get(metric, metric)
        ax.set_ylabel(f"Δ {label} vs noisy (paired)" if delta else label)
        ax.set_title(METRIC_TITLES.get(metric, METRIC_LABELS.get(metric, metric)))
        ax.grid(True, which="major", alpha=0.3)
    what = {"nfe": "vs number of network evaluations",
            "rtf": "vs real-time factor (wall time / audio duration)"}.get(x, f"vs {x}")
    quantity = "improvement over the noisy input" if delta else "quality"
    fig.suptitle(title or f"Study '{_study_name(frame)}': {quantity} {what} "
                 f"(mean ± 95% CI over {_n_files(rows)}{', paired' if delta else ''})", fontsize=11)
    legend_title = " / ".join(line_keys(rows, x))
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", title=legend_title,
               fontsize=8.5, title_fontsize=9, frameon=False)
    return fig


def _spectrogram_db(wave: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import stft

    f, t, z = stft(wave, fs=sample_rate, nperseg=512, noverlap=384)
    return f, t, 20 * np.log10(np.abs(z) + 1e-8)


def plot_spectrograms(frame: pd.DataFrame, base_dir: str | os.PathLike, file: str | None = None,
                      line: str | None = None, nfe: float | Sequence[float] | None = None, x: str = "nfe") -> Any:
    """Clean / noisy / enhanced (at a few NFE) log-magnitude spectrograms of one kept test file.

    Args:
        frame: a results table; its ``audio`` column gives the kept files relative to ``base_dir``.
        base_dir: the directory of ``results.csv`` (the sweep directory).
        file: kept file name (stem or name); None: the first one.
        line: which line's audio (see :func:`add_line_labels`); None: the first line with kept audio.
        nfe: NFE value(s) to show (nearest available); None: up to 3 spread over the available ones.

    Returns:
        The Figure, or None when no kept audio is found.
    """
    import soundfile as sf

    base_dir = Path(base_dir)
    rows = overall(frame)
    noisy_row = rows[(rows["kind"] == "noisy") & rows["audio"].notna()]
    noisy_files = [p for p in (str(noisy_row["audio"].iloc[0]).split(";") if len(noisy_row) else []) if p]
    if not noisy_files:
        return None
    stems = [Path(p).stem for p in noisy_files]
    stem = Path(file).stem if file else stems[0]
    if stem not in stems:
        raise ValueError(f"file {file!r} has no kept audio; kept files: {stems}")
    cells = add_line_labels(rows, x)
    cells = cells[cells["audio"].notna() & cells["audio"].astype(str).str.contains(stem, regex=False)]
    cells = cells.drop_duplicates(["line", "nfe", "cell"])
    if cells.empty:
        return None
    lines = list(dict.fromkeys(cells.sort_values("line", kind="stable")["line"]))
    chosen = line if line is not None else lines[0]
    if chosen not in lines:
        raise ValueError(f"line {line!r} not in this study; lines: {lines}")
    col = x if x in cells.columns and x != "rtf" else "nfe"
    sub = cells[cells["line"] == chosen].dropna(subset=[col]).sort_values(col).drop_duplicates(col)
    available = sub[col].to_numpy(float)
    if isinstance(nfe, (int, float)):  # one NFE
        nfe = [nfe]
    if nfe is None or col != "nfe":
        idx = sorted({0, len(available) // 2, len(available) - 1}) if len(available) else []
        picks = [available[i] for i in idx]
    else:
        picks = list(dict.fromkeys(float(available[np.argmin(np.abs(available - v))]) for v in nfe))
    panels: list[tuple[str, Path]] = [("clean", base_dir / "audio" / "clean" / f"{stem}.flac"),
                                      ("noisy", base_dir / noisy_files[stems.index(stem)])]
    for v in picks:
        row = sub[sub[col] == v].iloc[0]
        path = next(p for p in str(row["audio"]).split(";") if Path(p).stem == stem)
        label = f"NFE={v:g}" if col == "nfe" else f"{col}={v:g}, NFE={row['nfe']:g}"
        panels.append((f"enhanced, {label}", base_dir / path))
    panels = [(name, p) for name, p in panels if p.exists()]
    if len(panels) < 2:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels) + 0.8, 3.3), sharey=True, squeeze=False,
                             layout="constrained")
    ref_max = None
    im = None
    for ax, (name, path) in zip(axes[0], panels):
        wave, sr = sf.read(path, dtype="float32", always_2d=False)
        wave = wave.mean(axis=1) if wave.ndim > 1 else wave
        f, t, db = _spectrogram_db(wave, sr)
        ref_max = db.max() if ref_max is None else ref_max
        im = ax.pcolormesh(t, f / 1000, db - ref_max, vmin=-80, vmax=0, cmap="magma", shading="auto",
                           rasterized=True)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time (s)")
    axes[0][0].set_ylabel("frequency (kHz)")
    fig.colorbar(im, ax=axes[0].tolist(), label="level (dB re. clean peak)", shrink=0.9)
    fig.suptitle(f"Study '{_study_name(frame)}': {stem} ({chosen})", fontsize=11)
    return fig


def make_plots(results: str | os.PathLike, output: str | os.PathLike | None = None, x: str = "auto",
               formats: Sequence[str] = ("png", "pdf"), metrics: Sequence[str] | None = None,
               title: str | None = None, spectrogram: dict | None = None) -> list[Path]:
    """Draw every figure of a study from its ``results.csv``; returns the written files.

    Raises:
        FileNotFoundError / ValueError: see :func:`load_results`.
    """
    results = Path(results)
    if results.is_dir():  # the study's directory
        results = results / "results.csv"
    frame = load_results(results)
    output = Path(output) if output is not None else results.parent
    written: list[Path] = []
    if not (frame["kind"] == "cell").any():
        log.warning("%s: no finished cell to plot", results)
        return written
    xcol = choose_x(frame, x)
    fig = plot_metric_curves(frame, xcol, metrics, title)
    written += _save(fig, output / f"metric_vs_{xcol}", formats)
    plt.close(fig)
    if overall(frame)["delta_mean"].notna().any():
        fig = plot_metric_curves(frame, xcol, metrics, None, delta=True)
        written += _save(fig, output / f"improvement_vs_{xcol}", formats)
        plt.close(fig)
    if frame["rtf"].notna().any() and xcol != "rtf":
        fig = plot_metric_curves(frame, "rtf", metrics, None)
        written += _save(fig, output / "metric_vs_rtf", formats)
        plt.close(fig)
    spec = {"enabled": True, **(spectrogram or {})}
    if spec.get("enabled", True):
        fig = plot_spectrograms(frame, results.parent, spec.get("file"), spec.get("line"), spec.get("nfe"), xcol)
        if fig is None:
            log.info("no kept audio beside %s: spectrograms skipped", results)
        else:
            written += _save(fig, output / "spectrograms", formats)
            plt.close(fig)
    return written


def main(cfg: Any) -> None:
    """Hydra task of ``edm-se plot``."""
    from omegaconf import OmegaConf

    from edm_se.cli import UserError
    from edm_se.validate import plot_config

    plot_config(cfg, plt.figure().canvas.get_supported_filetypes())
    plt.close("all")
    try:
        spec = OmegaConf.to_container(cfg.spectrogram, resolve=True) if cfg.get("spectrogram") else None
        written = make_plots(cfg.results, cfg.output, x=str(cfg.x), formats=list(cfg.formats),
                             metrics=list(cfg.metrics) if cfg.metrics else None, title=cfg.title, spectrogram=spec)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    if not written:
        print(f"edm-se plot: {cfg.results} holds no finished cell; nothing drawn")
    for p in written:
        print(p)
