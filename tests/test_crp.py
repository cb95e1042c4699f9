"""Few-step fine-tuning (CRP, edm_se.crp) and the best-point report (edm_se.study_best): the gradient goes through
every unrolled sampler step (checked against finite differences, and it differs from a truncated one), the loss
falls on real audio, N drawn from a list resumes identically, max_steps=0 writes the starting weights, bad values
are one-line errors, and paired differences match a hand computation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN, run_cli, run_two_processes, trainer_and_batches
from hydra import compose, initialize_config_dir

from edm_se.checkpoint import load_checkpoint
from edm_se.cli import conf_dir
from edm_se.crp import CRP, neg_si_sdr


def _cfg(tmp_path, *overrides, tiny_ckpt=None):
    base = [*TINY_TRAIN, "paradigm=crp", f"run_dir={tmp_path / 'run'}"]
    if tiny_ckpt is not None:
        base.append(f"paradigm.enhancer_checkpoint={tiny_ckpt}")
    else:  # the bundled model: its SDE, preconditioning and net
        base = ["+experiment=cpu_demo", *[o for o in base if o != "net=tiny"]]
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name="train", overrides=[*base, *overrides])


def test_neg_si_sdr_matches_the_metric_and_ignores_the_scale():
    from edm_se.metrics import si_sdr

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 4000))
    est = ref + 0.3 * rng.standard_normal((3, 4000)) + 0.1
    got = neg_si_sdr(torch.from_numpy(est), torch.from_numpy(ref), eps=0.0)
    want = [-si_sdr(r, e) for r, e in zip(ref, est)]
    assert got.numpy() == pytest.approx(want, abs=1e-9)
    scaled = neg_si_sdr(torch.from_numpy(7.5 * est), torch.from_numpy(ref), eps=0.0)
    assert scaled.numpy() == pytest.approx(got.numpy(), abs=1e-9)
    with pytest.raises(ValueError, match="one shape"):
        neg_si_sdr(torch.zeros(2, 10), torch.zeros(2, 11))


def test_crp_gradient_goes_through_every_unrolled_step(tmp_path, tiny_checkpoint):
    """d loss / d theta along a direction equals the central finite difference of the whole N-step sample (float64);
    a gradient that stopped at each step's input (the trajectory treated as a constant) does not."""
    tr, batches = trainer_and_batches(_cfg(tmp_path, "paradigm.num_steps=3", "paradigm.loss=spec_si_sdr",
                                tiny_ckpt=tiny_checkpoint))
    para: CRP = tr.paradigm
    tr.denoiser.double()
    batch = next(batches)
    clean = batch["clean"].double()
    spec = tr.spectra(batch)
    spec = spec._replace(x0=spec.x0.to(torch.complex128), y=spec.y.to(torch.complex128),
                         scale=spec.scale.double())
    params = [p for p in tr.denoiser.parameters() if p.requires_grad]

    calls = []
    model = tr.model

    def loss_of(truncate: bool = False):
        def wrapped(x, y, sigma):
            calls.append(torch.is_grad_enabled())
            return model(x.detach() if truncate else x, y, sigma)

        tr.model = wrapped
        try:
            gen = torch.Generator().manual_seed(7)
            return para.per_example_loss(para.output(3).spectrum(tr, spec.y, gen), spec, clean).mean()
        finally:
            tr.model = model

    loss = loss_of()
    assert calls == [True, True, True]  # Euler, N = 3: three network calls, all recorded for autograd
    grads = torch.autograd.grad(loss, params)
    direction = [g / torch.sqrt(sum((h * h).sum() for h in grads)) for g in grads]
    analytic = float(sum((g * d).sum() for g, d in zip(grads, direction)))
    truncated = float(sum((g * d).sum() for g, d in zip(torch.autograd.grad(loss_of(truncate=True), params),
                                                         direction)))
    eps = 1e-5  # measured: relative error 6e-10 (1e-5), 6e-8 (1e-4), 6e-6 (1e-3)
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
        up = float(loss_of())
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
        down = float(loss_of())
        for p, d in zip(params, direction):
            p.add_(eps * d)
    numeric = (up - down) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6)
    assert abs(truncated - numeric) > 0.05 * abs(numeric), (truncated, numeric)


def test_crp_fine_tuning_lowers_its_loss_on_real_audio(tmp_path):
    """The bundled model fine-tuned through 2 Euler steps on one real batch: the predictive loss falls."""
    cfg = _cfg(tmp_path, "paradigm.num_steps=2", "trainer.optimizer.lr=1e-3", "trainer.warmup_steps=0",
               "trainer.lr_schedule=constant")
    tr, batches = trainer_and_batches(cfg)
    batch = next(batches)
    losses = [tr.paradigm.step(batch, torch.Generator().manual_seed(3))["loss"] for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_crp_draws_n_from_its_list_and_resumes_identically(tmp_path, tiny_checkpoint, monkeypatch):
    import csv

    from edm_se.provenance import file_sha256
    from edm_se.train import train

    def run(name, resume=False):
        cfg = _cfg(tmp_path / name, "paradigm.num_steps=[1,2,3]", "trainer.max_steps=6", "trainer.ckpt_every=1",
                   f"resume={str(resume).lower()}", tiny_ckpt=tiny_checkpoint)
        train(cfg)
        return tmp_path / name / "run"

    ref = run("ref")
    step = CRP.step

    def crash_at_step_3(self, batch, generator):
        if self.trainer.step == 3:
            raise RuntimeError("interrupted")
        return step(self, batch, generator)

    monkeypatch.setattr(CRP, "step", crash_at_step_3)
    with pytest.raises(RuntimeError, match="interrupted"):
        run("split")
    assert load_checkpoint(tmp_path / "split" / "run" / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(CRP, "step", step)
    split = run("split", resume=True)
    a, b = load_checkpoint(ref / "checkpoints" / "last.pt"), load_checkpoint(split / "checkpoints" / "last.pt")
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(b[key][name], value), f"{key}.{name}"
    assert a["paradigm"]["name"] == "crp" and a["paradigm"]["state"] == b["paradigm"]["state"]
    assert a["paradigm"]["state"]["init"]["sha256"] == file_sha256(tiny_checkpoint)

    drawn = [float(r["crp_num_steps"]) for r in csv.DictReader(open(ref / "log.csv")) if r.get("crp_num_steps")]
    again = [float(r["crp_num_steps"]) for r in csv.DictReader(open(split / "log.csv")) if r.get("crp_num_steps")]
    assert drawn == again and len(drawn) == 6
    assert set(drawn) <= {1.0, 2.0, 3.0} and len(set(drawn)) > 1


def test_zero_fine_tuning_steps_write_the_starting_weights(tmp_path, tiny_checkpoint):
    from edm_se.provenance import file_sha256
    from edm_se.train import train

    train(_cfg(tmp_path, "trainer.max_steps=0", tiny_ckpt=tiny_checkpoint))
    out = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    src = load_checkpoint(tiny_checkpoint)
    assert out["step"] == 0
    for name, value in src["ema"].items():
        assert torch.equal(out["ema"][name], value) and torch.equal(out["model"][name], value), name
    assert out["paradigm"]["state"]["init"]["sha256"] == file_sha256(tiny_checkpoint)


@pytest.mark.parametrize("override, message", [
    ("paradigm.num_steps=0", "paradigm.num_steps=0: must be an integer >= 1 or a non-empty list of them"),
    ("paradigm.num_steps=[1,0]", "paradigm.num_steps=[1, 0]: must be an integer >= 1"),
    ("paradigm.loss=l1", "paradigm.loss=l1: must be one of spec_mse, si_sdr, spec_si_sdr"),
    ("paradigm.sampler=ddim", "paradigm.sampler=ddim: must be a conf/sampler name"),
    ("paradigm.t_start=0", "paradigm.t_start=0: must be a number in (0, 1]"),
])
def test_bad_crp_values_are_one_line_config_errors(tmp_path, override, message):
    from edm_se import validate

    with pytest.raises(validate.ConfigError, match="^" + message.replace("(", "\\(").replace("[", "\\[")):
        validate.train_config(_cfg(tmp_path, override))


def test_bad_crp_value_on_the_command_line_exits_2_with_one_line(tmp_path):
    res = run_cli("train", "+experiment=cpu_demo", "paradigm=crp", "paradigm.loss=l1", f"run_dir={tmp_path / 'r'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("edm-se train: error: paradigm.loss=l1")
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------- best points
def _write_cell(root, cell, points):
    from edm_se.study_common import FORMAT

    d = root / f"cell={cell}"  # as a training study writes it: metrics.json "cell" is the directory name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"format": FORMAT, "cell": f"cell={cell}", "points": points}))


def _point(sampler, steps, nfe, sdr, wer, words):
    def stat(v, w=None):
        if w is None:
            return {"mean": float(np.mean(v)), "ci95": 0.1, "n": len(v)}
        return {"mean": float(np.dot(v, w) / np.sum(w)), "ci95": 1.0, "n": len(v)}

    return {"sampler": sampler, "num_steps": steps, "nfe": nfe,
            "metrics": {"si_sdr": stat(sdr), "wer_whisper": stat(wer, words)},
            "per_file": {"names": ["a", "b", "c", "d"], "si_sdr": sdr, "wer_whisper": wer, "ref_words": words}}


def test_best_points_pair_files_and_weight_wer_by_words(tmp_path):
    from edm_se.study_best import best_points, best_markdown, paired_difference

    words = [10, 5, 5, 20]
    base = _point("euler", 2, 2, [5.0, 6.0, 7.0, 8.0], [10.0, 20.0, 0.0, 5.0], words)
    tuned = _point("euler", 2, 2, [6.0, 7.1, 7.9, 9.0], [10.0, 0.0, 0.0, 5.0], words)
    other = _point("euler", 1, 1, [1.0, 9.0, 2.0, 14.0], [50.0, 20.0, 0.0, 5.0], words)
    _write_cell(tmp_path, "none", [base, other])
    _write_cell(tmp_path, "crp", [tuned])

    d = paired_difference(tuned, base, "si_sdr")
    diffs = np.array([1.0, 1.1, 0.9, 1.0])
    assert d["mean"] == pytest.approx(diffs.mean()) and d["n"] == 4
    from scipy import stats

    assert d["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * diffs.std(ddof=1) / 2)
    w = paired_difference(tuned, base, "wer_whisper")  # corpus WERs: (100 + 0 + 0 + 100) / 40 vs (100+100+0+100)/40
    assert w["mean"] == pytest.approx((200 - 300) / 40)

    summary = best_points(tmp_path, compare_to="none")
    sdr = summary["metrics"]["si_sdr"]
    assert sdr["best"]["label"].startswith("crp / euler 2") and sdr["runner_up"]["label"].startswith("none / euler 2")
    assert sdr["tied"] is False  # the means' CIs overlap, but the paired differences are consistent
    assert summary["metrics"]["wer_whisper"]["higher_is_better"] is False
    assert summary["metrics"]["wer_whisper"]["best"]["label"].startswith("crp")
    comps = {(c["label"].split(" /")[0], c["metric"]): c for c in summary["comparisons"]}
    assert set(comps) == {("crp", "si_sdr"), ("crp", "wer_whisper")}  # euler 1 has no tuned twin
    assert comps[("crp", "si_sdr")]["significant"] is True
    assert comps[("crp", "si_sdr")]["mean"] == pytest.approx(1.0)
    md = best_markdown(summary)
    assert "| si_sdr | crp / euler 2 (NFE 2)" in md and "## Against `none`" in md

    # the unpaired spread of `other` is huge: a point with a better mean but noisy differences is "tied"
    _write_cell(tmp_path, "wild", [_point("euler", 3, 3, [0.0, 10.0, 2.0, 20.0], [0.0] * 4, words)])
    wild = best_points(tmp_path)["metrics"]["si_sdr"]
    assert wild["best"]["label"].startswith("wild") and wild["tied"] is True
    assert not math.isnan(wild["difference"]["ci95"])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_crp_keeps_replicas_identical(tmp_path, tiny_checkpoint):
    """CRP calls the raw enhancer N times per backward (no DDP wrapper); its gradients are averaged explicitly."""
    run = tmp_path / "ddp"
    res = run_two_processes(29533, run, "trainer.max_steps=3", *TINY_TRAIN, "paradigm=crp", "paradigm.num_steps=2",
                            f"paradigm.enhancer_checkpoint={tiny_checkpoint}", "device=cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    check = json.loads((run / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"], check
