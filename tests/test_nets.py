"""Tests for the backbones in edm_se.nets and their configs in conf/net/*.yaml."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F

from edm_se.nets.ncsnpp import _fir_kernel_2d, fir_downsample_2d, fir_upsample_2d

NET_DIR = Path(__file__).resolve().parents[1] / "conf" / "net"
CONFIGS = sorted(p.stem for p in NET_DIR.glob("*.yaml"))

# Published parameter counts (checked within 1%) or upper bounds for the CPU nets.
PUBLISHED = {"ncsnpp": 65.6e6, "ncsnpp_m": 27.8e6, "adm": 16.6e6}
UPPER_BOUND = {"small": 1.0e6, "tiny": 50e3}


def _cfg(name: str):
    return OmegaConf.load(NET_DIR / f"{name}.yaml")


def _build(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate(_cfg(name), **overrides)


def _num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _reinit_zeroed(net: torch.nn.Module, generator: torch.Generator) -> int:
    """Give (near-)zero-initialised weight tensors random values; returns how many tensors were changed.

    NCSN++ (init_scale=0 -> variance scale 1e-10) and ADM (EDM init_zero) start with output layers at ~0, which
    hides the dependence of the output on c_noise; this mimics a trained net.
    """
    changed = 0
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and p.abs().max() < 1e-3:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
                changed += 1
    return changed


def test_every_config_has_an_expectation():
    assert CONFIGS, "no conf/net/*.yaml found"
    for name in CONFIGS:
        assert name in PUBLISHED or name in UPPER_BOUND, f"conf/net/{name}.yaml has no parameter-count expectation"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_lists_every_constructor_argument(name):
    cfg = _cfg(name)
    cls = get_class(cfg._target_)
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cfg.keys()) - {"_target_"} == params


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count(name):
    with torch.device("meta"):
        net = instantiate(_cfg(name))
    n = _num_params(net)
    if name in PUBLISHED:
        assert abs(n / PUBLISHED[name] - 1) < 0.01, f"{name}: {n} parameters vs published {PUBLISHED[name]:.3g}"
    else:
        assert n < UPPER_BOUND[name], f"{name}: {n} parameters"
    if name == "small":
        assert n > 3e5


@pytest.mark.parametrize("name", CONFIGS)
def test_output_shape_dtype_and_finite(name):
    net = _build(name).eval()
    factor = net.downsample_factor
    n_freq, n_time = max(64, factor), 2 * max(32, factor)
    x = torch.randn(2, 4, n_freq, n_time, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x, torch.tensor([-1.0, 0.5]))
    assert out.shape == (2, 2, n_freq, n_time)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_output_depends_on_c_noise(name):
    gen = torch.Generator().manual_seed(2)
    net = _build(name, dropout=0.0).eval()
    if name in ("ncsnpp", "ncsnpp_m", "adm"):  # zero-initialised output layers
        assert _reinit_zeroed(net, gen) > 0
    x = torch.randn(1, 4, 64, 64, generator=gen)
    with torch.no_grad():
        out_a = net(x, torch.tensor([-1.0]))
        out_b = net(x, torch.tensor([0.3]))
        out_a2 = net(x, torch.tensor([-1.0]))
    assert torch.equal(out_a, out_a2)  # deterministic in eval mode
    assert out_a.abs().max() > 0
    assert (out_a - out_b).abs().max() > 1e-3 * out_a.abs().max()


def test_adm_zero_init_outputs_zero():
    # EDM's init_zero: an untrained ADM predicts exactly 0 (documented behaviour; preconditioning relies on c_skip).
    net = _build("adm").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, 64, 64), torch.tensor([0.0]))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("name", ["small", "tiny"])
def test_gradient_reaches_every_parameter(name):
    net = _build(name).train()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 64, 64, generator=gen)
    target = torch.randn(2, 2, 64, 64, generator=gen)
    loss = (net(x, torch.tensor([-0.5, 0.7])) - target).square().mean()
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", CONFIGS)
def test_rejects_shapes_not_multiple_of_downsample_factor(name):
    with torch.device("meta"):
        net = instantiate(_cfg(name))
    factor = net.downsample_factor
    assert isinstance(factor, int) and factor > 1
    c_noise = torch.zeros(1, device="meta")
    for shape in [(1, 4, 256, factor + 1), (1, 4, factor * 2 + factor // 2, factor)]:
        with pytest.raises(ValueError, match="downsample_factor"):
            net(torch.empty(shape, device="meta"), c_noise)
    with pytest.raises(ValueError, match="input channels"):
        net(torch.empty(1, 3, factor, factor, device="meta"), c_noise)
    with pytest.raises(ValueError, match="c_noise"):
        net(torch.empty(2, 4, factor, factor, device="meta"), torch.zeros(3, device="meta"))


def test_small_fold_unfold_round_trip():
    net = _build("small")
    x = torch.randn(2, 3, 32, 16)
    folded = net._fold(x)
    assert folded.shape == (2, 3 * net.fold_f * net.fold_t, 32 // net.fold_f, 16 // net.fold_t)
    assert torch.equal(net._unfold(folded), x)


def test_fir_resampling_matches_transposed_and_strided_conv():
    # [1,3,3,1] FIR resampling against an independent formulation with depthwise (transposed) convolutions.
    kernel = _fir_kernel_2d([1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(4))
    weight = kernel[None, None].expand(3, 1, 4, 4)
    up_ref = F.conv_transpose2d(x, weight * 4, stride=2, padding=1, groups=3)
    down_ref = F.conv2d(x, weight, stride=2, padding=1, groups=3)
    torch.testing.assert_close(fir_upsample_2d(x, kernel), up_ref)
    torch.testing.assert_close(fir_downsample_2d(x, kernel), down_ref)
    # A constant image stays constant away from the borders (unit DC gain).
    ones = torch.ones(1, 1, 8, 8)
    assert torch.allclose(fir_upsample_2d(ones, kernel)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    assert torch.allclose(fir_downsample_2d(ones, kernel)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))
