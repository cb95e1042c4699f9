"""Every config in conf/sde, conf/precond, conf/sampler, conf/schedule and conf/loss instantiates and runs one step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from edm_se.denoiser import Denoiser
from edm_se.sde import OUVE

CONF = Path(__file__).resolve().parents[1] / "conf"


def _names(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _tiny_denoiser(precond):
    net = instantiate(OmegaConf.load(CONF / "net" / "tiny.yaml"))
    return Denoiser(net, precond)


def _batch():
    g = torch.Generator().manual_seed(0)
    y = 0.1 * torch.randn(2, 1, 16, 16, dtype=torch.complex64, generator=g)
    x0 = y + 0.05 * torch.randn(2, 1, 16, 16, dtype=torch.complex64, generator=g)
    return x0, y


@pytest.mark.parametrize("name", _names("sde"))
def test_sde_configs(name):
    sde = instantiate(OmegaConf.load(CONF / "sde" / f"{name}.yaml"))
    t = torch.tensor([0.0, 0.5, sde.t_max], dtype=torch.float64)
    assert torch.isfinite(sde.std(t)).all() and float(sde.std(t[:1])) == 0.0


@pytest.mark.parametrize("name", _names("precond"))
def test_precond_configs(name):
    precond = instantiate(OmegaConf.load(CONF / "precond" / f"{name}.yaml"), sde=OUVE(), _partial_=False)
    x0, y = _batch()
    out = _tiny_denoiser(precond)(x0 - y, y, torch.tensor([0.1, 0.3], dtype=torch.float64))
    assert out.shape == y.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", _names("sampler"))
def test_sampler_configs(name):
    sampler = instantiate(OmegaConf.load(CONF / "sampler" / f"{name}.yaml"), num_steps=2)
    x0, y = _batch()
    den = _tiny_denoiser(instantiate(OmegaConf.load(CONF / "precond" / "edm.yaml"), sde=OUVE(), _partial_=False))
    out = sampler(den, OUVE(), y, generator=torch.Generator().manual_seed(0))
    assert out.x0_hat.shape == y.shape and out.nfe >= 2 and torch.isfinite(out.x0_hat).all()


@pytest.mark.parametrize("name", _names("schedule"))
def test_schedule_configs(name):
    ts = instantiate(OmegaConf.load(CONF / "schedule" / f"{name}.yaml"))(4, OUVE())
    assert ts.shape == (5,) and float(ts[-1]) == 0.0 and torch.all(torch.diff(ts) < 0)


@pytest.mark.parametrize("name", _names("loss"))
def test_loss_configs(name):
    loss = instantiate(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))
    x0, y = _batch()
    den = _tiny_denoiser(instantiate(OmegaConf.load(CONF / "precond" / "edm.yaml"), sde=OUVE(), _partial_=False))
    value = loss(den, OUVE(), x0, y, generator=torch.Generator().manual_seed(0))
    assert value.shape == (2,) and torch.isfinite(value).all()
