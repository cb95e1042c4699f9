"""`edm-se import sgmse`: an SGMSE+ checkpoint (NCSN++ + OUVE, sgmse's own backbone code from its PyPI wheel, random
weights, saved in sgmse's Lightning layout) gives the same score and the same PC sampling in edm_se."""

from __future__ import annotations

import pytest
import torch

from conftest import run_cli
from sgmse_reference import sgmse_module

SMALL = {"nf": 16, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [16], "image_size": 64}
HPARAMS = {"backbone": "ncsnpp", "sde": "ouve", "theta": 1.5, "sigma_min": 0.05, "sigma_max": 0.5, "N": 4,
           "t_eps": 0.03, "n_fft": 510, "hop_length": 128, "spec_factor": 0.15, "spec_abs_exponent": 0.5,
           "transform_type": "exponent", **SMALL}


@pytest.fixture(scope="module")
def sgmse_ckpt(tmp_path_factory):
    """sgmse's NCSNpp with random (non-zero) weights, in sgmse's checkpoint layout, EMA weights different from the
    raw ones."""
    ncsnpp = sgmse_module("backbones.ncsnpp")
    torch.manual_seed(0)
    dnn = ncsnpp.NCSNpp(**SMALL).eval()
    with torch.no_grad():
        for name, p in dnn.named_parameters():
            if name != "all_modules.0.W":  # keep the Fourier frequencies as drawn
                p.add_(0.05 * torch.randn_like(p))
    raw = {f"dnn.{k}": v.clone() for k, v in dnn.state_dict().items()}
    ema = [p.detach().clone() for p in dnn.parameters()]
    for name, v in raw.items():  # the raw weights differ from the EMA ones: the import must pick the EMA
        if name != "dnn.all_modules.0.W":
            v.add_(0.01)
    path = tmp_path_factory.mktemp("sgmse") / "sgmse.ckpt"
    torch.save({"state_dict": raw, "hyper_parameters": HPARAMS, "global_step": 1234,
                "ema": {"decay": 0.999, "num_updates": 1234, "shadow_params": ema, "collected_params": None}}, path)
    return path, dnn


@pytest.fixture(scope="module")
def imported(sgmse_ckpt, tmp_path_factory):
    """The checkpoint imported once through the console command."""
    from edm_se.model import EnhancementModel

    out = tmp_path_factory.mktemp("imported") / "imported.pt"
    res = run_cli("import", "sgmse", str(sgmse_ckpt[0]), str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ema weights" in res.stdout
    return EnhancementModel.from_checkpoint(out, device="cpu")


def test_imported_score_equals_sgmse_score(sgmse_ckpt, imported):
    ckpt, dnn = sgmse_ckpt
    model = imported
    sde = model.parts.sde
    gen = torch.Generator().manual_seed(1)
    x0, y = (torch.randn(2, 1, 64, 32, dtype=torch.complex64, generator=gen) for _ in range(2))
    t = torch.tensor([0.9, 0.2])
    x_t = sde.perturb(x0, y, t.double(), torch.randn(x0.shape, dtype=x0.dtype, generator=gen)).to(torch.complex64)
    with torch.no_grad():
        theirs = -dnn(torch.cat([x_t, y], dim=1), t)  # sgmse 0.1.2 ScoreModel.forward (ncsnpp): -dnn([x_t, y], t)
        # our preconditioning's arithmetic in double precision around the float32 network (as the samplers do)
        x64, y64 = x_t.to(torch.complex128), y.to(torch.complex128)
        s = sde.s(t.double()).reshape(-1, 1, 1, 1)
        d = model.parts.denoiser((x64 - y64) / s, y64, sde.sigma(t.double()))
        ours = sde.score(x64, y64, y64 + d.to(torch.complex128), t.double()).to(torch.complex64)
    rel = float((ours - theirs).abs().norm() / theirs.abs().norm())
    print(f"score relative error {rel:.1e}")
    assert rel < 1e-5, rel
    assert float(theirs.abs().mean()) > 1e-2  # a real, non-trivial score
    assert model.parts.sde.theta == 1.5 and model.info["weights"] == "ema" and model.info["sgmse_step"] == 1234
    assert model.sampler.num_steps == 4 and not model.sampler.predictor_in_sigma  # sgmse's PC with its N


def test_imported_pc_sampler_reproduces_sgmse_pc_sampler_with_the_same_noise(sgmse_ckpt, imported, monkeypatch):
    from edm_se import samplers as SM

    ckpt, dnn = sgmse_ckpt
    model = imported
    y = torch.randn(1, 1, 64, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    draws: list[torch.Tensor] = []
    real_randn_like = SM.randn_like

    def recording(x, generator=None):
        z = real_randn_like(x, generator)
        draws.append(z.clone())
        return z

    monkeypatch.setattr(SM, "randn_like", recording)
    sampler = model.make_sampler("pc", num_steps=4, final_denoise=False, predictor_in_sigma=False, float64=False,
                                 schedule={"_target_": "edm_se.schedules.Uniform", "t_min": 0.03})
    with torch.no_grad():
        ours = sampler(model.parts.denoiser, model.parts.sde, y, generator=torch.Generator().manual_seed(3)).x0_hat
    monkeypatch.setattr(SM, "randn_like", real_randn_like)
    queue = list(draws)
    monkeypatch.setattr(torch, "randn_like", lambda x, *a, **k: queue.pop(0).to(x.dtype) if queue else
                        torch.zeros_like(x))  # sgmse draws the same noise in the same order (prior, ALD, predictor)
    sampling, sdes = sgmse_module("sampling"), sgmse_module("sdes")
    sde = sdes.OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5, N=4)

    def score_fn(x, y_, t):
        return -dnn(torch.cat([x, y_], dim=1), t)

    with torch.no_grad():
        theirs, nfe = sampling.get_pc_sampler("reverse_diffusion", "ald", sde, score_fn, y, denoise=True, eps=0.03,
                                              snr=0.5, corrector_steps=1)()
    assert nfe == 8 and len(draws) == 1 + 4 + 3  # prior, 4 corrector draws, 3 predictor draws (not the last)
    rel = float((ours - theirs).abs().norm() / theirs.abs().norm())
    print(f"PC sample relative error {rel:.1e}")
    assert rel < 1e-4, rel  # float32 arithmetic in both, 8 network calls


def test_import_refuses_what_it_cannot_read_with_one_line(tmp_path, sgmse_ckpt, capsys):
    from edm_se.sgmse_import import main

    ckpt, _ = sgmse_ckpt
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {**HPARAMS, "backbone": "dcunet"}}, bad)
    wide = tmp_path / "wide.ckpt"
    torch.save({**torch.load(ckpt, weights_only=False), "hyper_parameters": {**HPARAMS, "nf": 32}}, wide)
    notorch = tmp_path / "text.ckpt"
    notorch.write_text("not a checkpoint")
    saved = torch.load(ckpt, weights_only=False)
    refused = [(bad, "only 'ncsnpp'"), (wide, "shape"), (notorch, "not a PyTorch checkpoint (neither a zip"),
               (tmp_path / "missing.ckpt", "not found"), (tmp_path, "is a directory; name the checkpoint")]
    # hyper-parameters of the wrong type or out of range, and a state_dict that is no mapping: one line naming them
    for i, (change, why) in enumerate([({"hyper_parameters": {**HPARAMS, "theta": "abc"}}, "theta='abc': not a number"),
                                       ({"hyper_parameters": {**HPARAMS, "nf": "x"}}, "nf='x': not an integer"),
                                       ({"hyper_parameters": {**HPARAMS, "ch_mult": 2}}, "not a list of integers"),
                                       ({"hyper_parameters": {**HPARAMS, "N": 0}}, "N=0: its PC sampler needs"),
                                       ({"hyper_parameters": {**HPARAMS, "sigma_max": -1}},
                                        "do not build an edm_se model: sde: need 0 < sigma_min < sigma_max"),
                                       ({"hyper_parameters": "x"}, "hyper_parameters are a str, not a mapping"),
                                       ({"state_dict": [1]}, "state_dict is a list, not a mapping of tensors")]):
        torch.save({**saved, **change}, tmp_path / f"odd{i}.ckpt")
        refused.append((tmp_path / f"odd{i}.ckpt", why))
    for path, why in refused:
        assert main(["sgmse", str(path), str(tmp_path / "o.pt")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edm-se import: error: ") and why in err[0], err
    assert not (tmp_path / "o.pt").exists()
    # an output that cannot be written, or that is the input itself (which it would have overwritten)
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    (tmp_path / "afile").write_text("x")
    for out, why in ((tmp_path, "is a directory; name the output file (e.g. "),
                     (tmp_path / "afile" / "o.pt", "afile is a file, not a directory"),
                     (tmp_path / ".." / tmp_path.name / "copy.ckpt", "is the sgmse checkpoint itself")):
        assert main(["sgmse", str(copy), str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
    assert copy.read_bytes() == ckpt.read_bytes()
    assert main(["sgmse"]) == 2 and "usage" in capsys.readouterr().err
    assert main(["sgmsee", str(ckpt), str(tmp_path / "o.pt")]) == 2
    assert capsys.readouterr().err.startswith("edm-se import: error: unknown source 'sgmsee'; the one importer is sgmse")
