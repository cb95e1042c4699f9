"""Plots from a hand-made results.csv with known values: axes contain the data, one line per sampler, log2 NFE
axis, the noisy reference line at its value, CI bands, and the figure files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edm_se import plots

SAMPLERS = {"edm_heun": [1, 3, 7, 15], "euler": [1, 2, 4, 8], "pc": [2, 4, 8, 16]}
NOISY = {"pesq": 1.5, "si_sdr": 5.0}


def _results(tmp_path, with_rtf=True):
    rows = []
    for k, (sampler, nfes) in enumerate(SAMPLERS.items()):
        for j, nfe in enumerate(nfes):
            for metric, base in (("pesq", 1.6), ("si_sdr", 6.0)):
                rows.append({"study": "steps", "kind": "cell", "cell": f"sampler={sampler},n={j}", "sampler": sampler,
                             "num_steps": j + 1, "nfe": nfe, "t_start": 1.0, "metric": metric,
                             "mean": base + 0.1 * k + 0.05 * j, "ci95": 0.02, "n": 10,
                             "rtf": 0.01 * nfe if with_rtf else np.nan})
                # a per-SNR row (excluded from the curves)
                rows.append({**rows[-1], "snr_db": 0.0, "mean": 99.0, "ci95": np.nan})
    for metric, value in NOISY.items():
        rows.append({"study": "steps", "kind": "noisy", "cell": "noisy input", "metric": metric, "mean": value,
                     "ci95": 0.1, "n": 10})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_metric_vs_nfe_axes_lines_and_reference(tmp_path):
    frame = plots.load_results(_results(tmp_path))
    assert plots.choose_x(frame) == "nfe"
    fig = plots.plot_metric_curves(frame, "nfe")
    assert len(fig.axes) == 2
    for ax, metric in zip(fig.axes, ("pesq", "si_sdr")):
        data = frame[(frame.kind == "cell") & (frame.metric == metric) & frame.snr_db.isna()]
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        assert sorted(ln.get_label() for ln in lines) == sorted(SAMPLERS)
        # every data point lies inside the axes' limits
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        assert x0 < data.nfe.min() and x1 > data.nfe.max()
        assert y0 < data["mean"].min() and y1 > data["mean"].max()
        assert y1 < 50  # the per-SNR rows (mean 99) are not drawn
        assert ax.get_xscale() == "log"
        assert ax.xaxis.get_scale() == "log" and ax.xaxis._scale.base == 2
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert {"1", "2", "4", "8", "16"} <= set(labels)
        # the plotted y values are the table's means
        for ln in lines:
            want = data[data.sampler == ln.get_label()].sort_values("nfe")
            np.testing.assert_allclose(ln.get_xdata(), want.nfe)
            np.testing.assert_allclose(ln.get_ydata(), want["mean"])
        # dashed reference line at the noisy score
        refs = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(refs) == 1
        assert np.allclose(refs[0].get_ydata(), NOISY[metric])
        # one shaded CI band per line
        assert len(ax.collections) == len(SAMPLERS)
    legend = fig.legends[0]
    assert {t.get_text() for t in legend.get_texts()} == {*SAMPLERS, "noisy input"}


def test_make_plots_writes_png_and_pdf_and_rtf(tmp_path):
    written = plots.make_plots(_results(tmp_path), output=tmp_path / "figs")
    names = {p.name for p in written}
    assert {"metric_vs_nfe.png", "metric_vs_nfe.pdf", "metric_vs_rtf.png", "metric_vs_rtf.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in written)


def test_x_axis_falls_back_to_swept_parameter(tmp_path):
    rows = []
    for sampler in ("edm_heun", "euler"):
        for t in (0.3, 0.5, 1.0):
            rows.append({"study": "t_start", "kind": "cell", "sampler": sampler, "nfe": 15, "t_start": t,
                         "metric": "pesq", "mean": 1.0 + t, "ci95": 0.1, "n": 4, "rtf": 0.1})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    frame = plots.load_results(path)
    assert plots.choose_x(frame) == "t_start"
    fig = plots.plot_metric_curves(frame, "t_start")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert len([ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]) == 2
    assert ax.get_xlim()[0] <= 0.3 and ax.get_xlim()[1] >= 1.0


def test_line_labels_name_the_varying_parameters(tmp_path):
    rows = [{"study": "churn", "kind": "cell", "sampler": "edm_heun_churn", "nfe": n, "s_churn": c, "s_noise": 1.0,
             "metric": "pesq", "mean": 1.0, "ci95": math.nan, "n": 3} for n in (3, 7) for c in (0.0, 0.5)]
    frame = pd.DataFrame(rows)
    frame["snr_db"] = np.nan
    labelled = plots.add_line_labels(frame, "nfe")
    assert sorted(labelled.line.unique()) == ["s_churn=0", "s_churn=0.5"]


def test_missing_results_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such results file"):
        plots.load_results(tmp_path / "nope.csv")


def test_asking_for_a_metric_the_results_lack_names_it_and_those_they_have(tmp_path):
    """metrics=[foo] used to end in "no finished cell with a value of 'nfe' to plot"."""
    frame = plots.load_results(_results(tmp_path))
    assert plots.metrics_present(frame, ["si_sdr"]) == ["si_sdr"]
    with pytest.raises(ValueError, match=r"metrics=\['wer_whisper', 'pesq'\]: no finished cell has wer_whisper "
                                         r"\(the results have pesq, si_sdr\)"):
        plots.metrics_present(frame, ["wer_whisper", "pesq"])


def test_formats_must_name_figure_formats(tmp_path):
    """formats=[] used to say the results held no finished cell; an unknown format is named (one line, exit 2)."""
    from conftest import run_cli, run_cli_many

    results = _results(tmp_path)
    cases = (("[]", "[]"), ("[png,gif2]", "['png', 'gif2']"))
    runs = run_cli_many(*(["plot", f"results={results}", f"output={tmp_path / 'out'}", f"formats={formats}"]
                          for formats, _ in cases))
    for res, (formats, shown) in zip(runs, cases):
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip().startswith(f"edm-se plot: error: formats={shown}: must be a non-empty list of ")
        assert "pdf" in res.stderr and "svg" in res.stderr
    assert not (tmp_path / "out").exists()
    # a value where a list goes (metrics=pesq was read letter by letter: "no finished cell has p, e, s, q"), an NFE
    # that is not a number (a traceback), a flag that is not a bool (taken as true)
    refused = (("formats=png", "formats=png: must be a non-empty list of "),
               ("metrics=pesq", "metrics=pesq: must be a non-empty list of metric names (metrics=[pesq,estoi]) or "
                                "null"),
               ("spectrogram.nfe=[1,x]", "spectrogram.nfe=[1, 'x']: must be an NFE >= 1, a non-empty list of them, "
                                         "or null"),
               ("spectrogram.nfe=0", "spectrogram.nfe=0: must be an NFE >= 1"),
               ("spectrogram.enabled=maybe", "spectrogram.enabled=maybe: must be true or false"))
    runs = run_cli_many(*(["plot", f"results={results}", f"output={tmp_path / 'out'}", arg] for arg, _ in refused))
    for res, (_, why) in zip(runs, refused):
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith(f"edm-se plot: error: {why}"), res.stderr
    assert not (tmp_path / "out").exists()
    ok = run_cli("plot", f"results={results}", f"output={tmp_path / 'out'}", "formats=[svg]")
    assert ok.returncode == 0 and (tmp_path / "out" / "metric_vs_nfe.svg").is_file()


def test_a_file_where_the_figures_go_is_one_line(tmp_path):
    from conftest import run_cli_many

    results = _results(tmp_path)
    blocker = tmp_path / "figures.png"
    blocker.write_bytes(b"x")
    outputs = (blocker, blocker / "sub")
    for res in run_cli_many(*(["plot", f"results={results}", f"output={output}"] for output in outputs)):
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip() == f"edm-se plot: error: {blocker}: is a file where a directory is needed"


def test_many_metrics_wrap_into_balanced_rows_in_metric_order(tmp_path):
    """Six metrics (PESQ ... DNSMOS BAK) make 2 rows of 3 panels, not one row 26 inches wide; five make 3 + 2 (the
    sixth slot removed); each panel holds its own metric's values."""
    metrics = ["pesq", "estoi", "si_sdr", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"]
    rows = [{"study": "steps", "kind": "cell", "cell": f"sampler=euler,n={j}", "sampler": "euler", "num_steps": j + 1,
             "nfe": nfe, "t_start": 1.0, "metric": m, "mean": 10.0 * i + j, "ci95": 0.1, "n": 10, "rtf": 0.01 * nfe}
            for i, m in enumerate(metrics) for j, nfe in enumerate([1, 2, 4])]
    for n_metrics, grid in ((6, (2, 3)), (5, (2, 3)), (4, (1, 4))):
        path = tmp_path / f"results_{n_metrics}.csv"
        pd.DataFrame([r for r in rows if r["metric"] in metrics[:n_metrics]]).to_csv(path, index=False)
        fig = plots.plot_metric_curves(plots.load_results(path), "nfe")
        assert len(fig.axes) == n_metrics
        assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == grid
        for i, ax in enumerate(fig.axes):
            assert ax.get_title() == plots.METRIC_TITLES.get(metrics[i], plots.METRIC_LABELS[metrics[i]])
            (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
            np.testing.assert_allclose(line.get_ydata(), [10.0 * i, 10.0 * i + 1, 10.0 * i + 2])
        width, height = fig.get_size_inches()
        assert width == pytest.approx(4.3 * grid[1]) and height == pytest.approx(3.7 * grid[0])


def test_against_a_swept_parameter_each_nfe_is_its_own_line(tmp_path):
    """A study over oa_weight (or t_start) at two step counts drew one zig-zag line per sampler through both NFEs;
    each NFE is now a line. Against NFE or RTF the NFE is the x axis's own variable, not a line."""
    rows = [{"study": "oa", "kind": "cell", "sampler": "edm_heun", "nfe": n, "oa_weight": w, "metric": "pesq",
             "mean": 1.0 + w + n, "ci95": 0.01, "n": 3, "rtf": 0.05 * n} for n in (1, 7) for w in (0.0, 0.2, 0.5)]
    frame = pd.DataFrame(rows)
    frame["snr_db"] = np.nan
    labelled = plots.add_line_labels(frame, "oa_weight")
    assert sorted(labelled.line.unique()) == ["nfe=1", "nfe=7"]
    for _, line in labelled.groupby("line"):
        assert sorted(line.oa_weight) == [0.0, 0.2, 0.5] and line.nfe.nunique() == 1
    assert sorted(plots.add_line_labels(frame, "nfe").line.unique()) == ["oa_weight=0", "oa_weight=0.2",
                                                                         "oa_weight=0.5"]
    assert "nfe" not in plots.line_keys(frame, "rtf")
    # t_start at one step count per sampler: the NFE follows the sampler and adds no line
    same = pd.DataFrame([{"kind": "cell", "sampler": s, "nfe": n, "t_start": t, "metric": "pesq", "mean": 1.0}
                         for s, n in (("edm_heun", 15), ("euler", 8)) for t in (0.5, 1.0)])
    assert plots.line_keys(same, "t_start") == ["sampler"]


def test_the_study_directory_is_read_for_its_results_and_a_foreign_file_is_named(tmp_path):
    """`results=<study dir>` reads its results.csv and draws beside it; a file that is not a CSV was pandas' message
    alone (`Error tokenizing data...`, `'utf-8' codec can't decode...`), without the file's name."""
    _results(tmp_path)
    written = plots.make_plots(tmp_path, formats=["png"])
    assert tmp_path / "metric_vs_nfe.png" in written
    (tmp_path / "notes.md").write_text("# a\nb,c\nd,e,f,g\n")
    (tmp_path / "weights.pt").write_bytes(b"PK\x03\x04" + bytes(range(128, 256)))
    for name, why in (("notes.md", "ParserError"), ("weights.pt", "UnicodeDecodeError")):
        with pytest.raises(ValueError, match=rf"{name}: not a study results.csv \({why}\)"):
            plots.load_results(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such results file"):
        plots.make_plots(tmp_path / "notes_dir_missing")
