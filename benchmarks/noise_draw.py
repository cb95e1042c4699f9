"""Benchmark: what one Gaussian draw of the sampler's state costs, and whether it can hide behind a network call.

The stochastic samplers draw one float64 (complex128) normal per state value and step. This times, on the padded
compressed STFT of a 4 s input (1 x 1 x 256 x 512):
- ``randn_like`` (edm_se's vectorised form of PyTorch's float64 algorithm) against ``torch.randn`` itself, and its two
  parts: the generator's uniforms (``torch.rand``, serial) and the Box-Muller transform;
- ``torch.randn`` in complex64 (PyTorch's vectorised float32 path; other values);
- one call of the bundled denoiser, the call followed by a draw, and the call with the draw on a second Python
  thread (torch releases the GIL in both), to see whether the draw can overlap the network on this machine.

Medians of ``--repeats`` runs; writes JSON with ``--json``. Where ``randn_like`` comes out slower than
``torch.randn``, ``EDM_SE_NORMAL=torch`` makes ``randn_like`` use ``torch.randn`` itself (``vectorised_path_used``
in the JSON says which ran).

    python benchmarks/noise_draw.py [--repeats 30] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import torch

from _enhance_setup import add_model_args, model_and_input  # benchmarks/ (the script's own directory)
from _env import environment


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, repeats=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from edm_se.model import peak_normalize
    from edm_se.noise import _box_muller16, _fast_normal_ok, randn_like

    model, wave = model_and_input(args)
    y, _ = model.to_spec(peak_normalize(wave[None])[0])
    state = torch.zeros(y.shape, dtype=torch.complex128)
    n = 2 * state.numel()
    gen = torch.Generator().manual_seed(0)
    uniforms = torch.rand(n, dtype=torch.float64, generator=gen)
    sigma = torch.full((1,), 0.5, dtype=torch.float64)
    x_tilde = torch.randn_like(y)
    den = model.parts.denoiser

    def call():
        den(x_tilde, y, sigma)

    def call_then_draw():
        den(x_tilde, y, sigma)
        randn_like(state, gen)

    def call_beside_draw():
        worker = threading.Thread(target=randn_like, args=(state, gen))
        worker.start()
        den(x_tilde, y, sigma)
        worker.join()

    r = args.repeats
    with torch.no_grad():
        ms = {"randn_like_complex128": _median_ms(lambda: randn_like(state, gen), r),
              "torch_randn_complex128": _median_ms(
                  lambda: torch.randn(state.shape, dtype=torch.complex128, generator=gen), r),
              "torch_rand_float64": _median_ms(lambda: torch.rand(n, dtype=torch.float64, generator=gen), r),
              "box_muller": _median_ms(lambda: _box_muller16(uniforms.view(-1, 2, 8), 0.5 ** 0.5), r),
              "torch_randn_complex64": _median_ms(
                  lambda: torch.randn(state.shape, dtype=torch.complex64, generator=gen), r)}
        for _ in range(2):  # interleaved twice: the call's time drifts on a shared machine
            for name, fn in (("call", call), ("call_then_draw", call_then_draw),
                             ("call_with_draw_on_a_thread", call_beside_draw)):
                ms.setdefault(name, []).append(_median_ms(fn, max(r // 3, 3)))
    result = {"state_shape": list(state.shape), "values": n, "threads": args.threads, "repeats": r,
              "vectorised_path_used": _fast_normal_ok(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "ms": ms, **environment()}
    print(f"one draw of a {tuple(state.shape)} complex128 state ({n} float64 normals), {args.threads} threads, "
          f"{result['cpu']} ({result['cpu_capability']}), torch {torch.__version__}:")
    for k, v in ms.items():
        print(f"  {k:<30}" + (" / ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else f"{v:.2f}") + " ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
