"""``edm-se enhance``: enhance a file or a directory with any sampler and number of steps, or with a pretrained peer
(``enhancer=dfn3|rnnoise|noisereduce``, :mod:`edm_se.enhancers`).

Writes one enhanced file per input, with the same relative path and name, at the model's sample rate, each
written atomically. Every input is validated before anything is written, so a bad file (missing, empty, silent,
not audio, NaN/Inf, shorter than one STFT frame) stops the run with one line and leaves no output behind.

An interrupted run resumes: the output directory keeps ``enhance.json`` (what makes the outputs: the checkpoint's
SHA-256 and the resolved sampler, or the peer and its version, with ``t_start``, ``seed`` and the rates) and
``enhance_done.jsonl`` (one line per finished file with its input's SHA-256). A re-run with the same configuration
skips every file finished from the same input content; each file's noise comes from ``seed`` alone, so the result
equals an uninterrupted run's. A re-run with another configuration into the same directory is refused (one line
naming what changed); ``resume=false`` starts over.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("edm_se.enhance")

from edm_se.audio import AUDIO_SUFFIXES  # noqa: E402  (one list of audio suffixes for every command)
CACHE_SAMPLES = 2**27  # decoded samples kept between validation and enhancement (float32: 512 MiB, ~2.3 h at 16 kHz)


def list_inputs(path: str | Path, exclude: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Return ``(root, files)`` for a file or a directory (searched recursively for audio files).

    Args:
        exclude: a directory whose files are not inputs (the output directory, when it lies inside the input
            directory: a re-run must not take the outputs of the last run for inputs).

    Raises:
        AudioError: the path does not exist, or a directory holds no audio file (or none outside ``exclude``).
    """
    from edm_se.audio import AudioError

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file or directory")
    if path.is_file():
        return path.parent, [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if exclude is not None and Path(exclude).resolve() != path.resolve():
        skip = Path(exclude).resolve()
        kept = [f for f in files if not f.resolve().is_relative_to(skip)]
        if files and not kept:  # every audio file is the output: `output=` names the one input, or the last outputs
            if skip.is_file():
                raise AudioError(files[0], f"enhancing it into {exclude} would overwrite this input: name another "
                                 "output")
            raise AudioError(path, f"its only audio files lie under the output {exclude}: no input is left")
        if len(kept) < len(files):
            log.info("%s: %d audio file(s) under the output %s are not taken as inputs", path, len(files) - len(kept),
                     exclude)
        files = kept
    if not files:
        raise AudioError(f"{path}: directory holds no audio file ({', '.join(AUDIO_SUFFIXES)})")
    return path, files


def plan_outputs(inputs: list[Path], root: Path, output: Path) -> list[Path]:
    """The file each input is written to: ``output`` itself for one input and an output file
    (:func:`output_is_file`), else ``output / <relative path>``, with ``.wav`` for a suffix that cannot be written
    (an ``.mp3`` input).

    Raises:
        AudioError: an output would overwrite an input (``output`` is the input file or directory), or two inputs
            would be written to one file (``x.wav`` and ``x.mp3`` of one directory).
    """
    from edm_se.audio import WRITABLE_SUFFIXES, AudioError

    to_file = output_is_file(output)
    dests, seen = [], {}
    sources = {f.resolve(): f for f in inputs}
    for f in inputs:
        dest = output if to_file else output / f.relative_to(root)
        if dest.suffix.lower() not in WRITABLE_SUFFIXES:  # e.g. an .mp3 input: written as .wav
            dest = dest.with_suffix(".wav")
        key = dest.resolve()
        if key in sources:
            raise AudioError(sources[key], f"enhancing it into {output} would overwrite this input: name another "
                             "output")
        if key in seen:
            raise AudioError(dest, f"{seen[key]} and {f} would both be written to this file: enhance them into "
                             "separate outputs")
        seen[key] = f
        dests.append(dest)
    return dests


def enhance_files(model, inputs: list[Path], root: Path, output: Path, sampler=None, num_steps=None,
                  t_start: float = 1.0, seed: int = 0, progress: bool = True,
                  on_mismatch: str = "resample", sample_rate: int = 16000, resume: bool = True,
                  estimates: bool = False, oa_weight: float = 0.0) -> dict:
    """Enhance ``inputs`` with ``model`` and write them under ``output`` (same relative paths), or, for a single
    input and an ``output`` with an audio suffix that is not an existing directory, to the file ``output`` itself
    (no record then: there is nothing to resume).

    Args:
        model: an :class:`edm_se.model.EnhancementModel` (sampler, num_steps, t_start and seed apply) or any
            :class:`edm_se.enhancers.Enhancer` (a peer such as DeepFilterNet3; run at ``sample_rate``, NFE 0).
        resume: skip the files an earlier run with the same configuration finished into ``output`` (module
            docstring); False enhances every file and starts the record anew.
        estimates: also write the clean estimate of every network call (a diffusion model only; see
            :attr:`edm_se.model.EnhanceResult.estimates`) to ``output/estimates/nfe<k>/`` (same relative paths, so
            each is a directory ``edm-se evaluate`` scores), and ``output/estimates/steps.csv``: one row per file
            and call (``file, nfe, t, sigma, seconds``: the sampling time up to that call).
        oa_weight: observation adding, ``(1 - w) * enhanced + w * noisy`` (0: off; a diffusion model or a peer;
            :func:`edm_se.postprocess.observation_adding`).

    Inputs at another sample rate are resampled to the model's with a logged notice (``on_mismatch="resample"``)
    or refused with :class:`edm_se.audio.AudioError` (``"error"``); multi-channel inputs are down-mixed.

    Returns:
        ``{"files": n, "skipped": k, "nfe": int, "audio_seconds": float, "wall_seconds": float, "rtf": float}``:
        ``files`` counts the inputs, ``skipped`` those an earlier run had finished; the times and RTF are of the
        files enhanced in this run.

    Raises:
        edm_se.audio.AudioError: a bad input (nothing is written then), or ``output`` holds the outputs of
            another configuration (``resume`` True).
        ValueError: ``oa_weight`` outside [0, 1] (nothing is written then).
        edm_se.validate.ConfigError: the sampler's time grid cannot be made on the model's SDE
            (:meth:`edm_se.model.EnhancementModel.check_sampler`; nothing is written then).
    """
    from tqdm import tqdm

    from edm_se import enhance_record as record
    from edm_se.audio import WRITABLE_SUFFIXES, AudioError, load_audio, save_audio
    from edm_se.postprocess import check_oa_weight, observation_adding
    from edm_se.provenance import file_sha256

    oa_weight = check_oa_weight(oa_weight)

    diffusion = hasattr(model, "make_sampler")
    sr = int(model.sample_rate) if diffusion else int(sample_rate)
    # Validate everything first, so nothing is written if one input is bad. Decoded waveforms are kept (up to
    # CACHE_SAMPLES in all) so each file is decoded once; beyond that budget the rest is decoded again below.
    cache: dict[Path, object] = {}
    cached = 0
    for f in inputs:
        wave = load_audio(f, sample_rate=sr, on_mismatch=on_mismatch)
        if cached + wave.shape[-1] <= CACHE_SAMPLES:
            cache[f] = wave
            cached += wave.shape[-1]
    to_file = output_is_file(output)
    if estimates and not diffusion:
        raise ValueError("estimates=true needs the diffusion enhancer (a peer makes no network calls to show)")
    if estimates and to_file:
        raise AudioError(output, "estimates=true writes a directory of them: name a directory as output")
    if to_file and len(inputs) != 1:
        raise AudioError(output, f"an output file takes one input, not {len(inputs)}: name a directory")
    if to_file and Path(output).suffix.lower() not in WRITABLE_SUFFIXES:
        raise AudioError(output, f"cannot write {Path(output).suffix} (an output file ends in "
                         f"{', '.join(WRITABLE_SUFFIXES)})")
    dests = plan_outputs(inputs, root, Path(output))
    if diffusion:
        model.check_sampler(sampler, num_steps, t_start)
    config = {**record.identity(model, sampler, num_steps, t_start, seed, sr, on_mismatch, oa_weight),
              "estimates": bool(estimates)}
    done = {} if to_file else record.open_record(output, config, resume)
    total_audio, total_wall, nfe, skipped = 0.0, 0.0, 0, 0
    for f, dest in tqdm(list(zip(inputs, dests)), desc="enhance", disable=not progress, dynamic_ncols=True):
        rel = f.relative_to(root)
        input_sha256 = file_sha256(f)
        if not to_file and done.get(rel.as_posix()) == input_sha256 and dest.is_file():
            skipped += 1
            cache.pop(f, None)
            continue
        wave = cache.pop(f, None)
        if wave is None:
            wave = load_audio(f, sample_rate=sr, on_mismatch=on_mismatch)
        calls = None
        if diffusion:
            res = model.enhance(wave, sr, sampler=sampler, num_steps=num_steps, t_start=t_start, seed=seed,
                                return_estimates=estimates, oa_weight=oa_weight)
            enhanced, seconds, nfe = res.waveform, res.seconds, res.nfe
            for e in res.estimates or []:
                save_audio(output / "estimates" / f"nfe{e['nfe']:03d}" / dest.relative_to(output), e["waveform"], sr)
            if res.estimates is not None:
                calls = [{k: e[k] for k in ("nfe", "t", "sigma", "seconds")} for e in res.estimates]
        else:
            import torch

            from edm_se.enhancers import timed_enhance

            enhanced, seconds = timed_enhance(model, wave.numpy(), sr)
            enhanced = observation_adding(torch.as_tensor(enhanced), wave, oa_weight)
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_audio(dest, enhanced, sr)
        if not to_file:
            record.record_done(output, rel.as_posix(), input_sha256, calls)
        total_audio += wave.shape[-1] / sr
        total_wall += seconds
    if skipped:
        log.info("resumed: %d of %d file(s) were already enhanced in %s with this configuration", skipped,
                 len(inputs), output)
    if estimates:
        record.write_steps_csv(output, [f.relative_to(root).as_posix() for f in inputs])
    return {"files": len(inputs), "skipped": skipped, "nfe": nfe, "audio_seconds": total_audio,
            "wall_seconds": total_wall, "rtf": total_wall / max(total_audio, 1e-9)}


def output_is_file(output: str | Path) -> bool:
    """Whether ``output`` names an audio file (an audio suffix, and not an existing directory) and not a
    directory."""
    out = Path(output)
    return out.suffix.lower() in AUDIO_SUFFIXES and not out.is_dir()


def main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se enhance``."""
    import torch

    from edm_se.model import EnhancementModel

    from edm_se import validate

    validate.enhance_config(cfg)
    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
    root, files = list_inputs(cfg.input, exclude=cfg.output)
    diffusion = str(cfg.enhancer) == "diffusion"
    if diffusion:
        model = EnhancementModel.from_checkpoint(cfg.ckpt, device=cfg.device)
        given = validate.command_line()
        if "sample_rate" in given and int(cfg.sample_rate) != model.sample_rate:  # it was ignored without a word
            raise validate.ConfigError(
                f"sample_rate={cfg.sample_rate}: the diffusion model enhances at its checkpoint's rate, "
                f"{model.sample_rate} Hz (inputs at other rates are resampled, see on_rate_mismatch); sample_rate= "
                "sets a peer's output rate (enhancer=dfn3|rnnoise|noisereduce)")
        options = {"sampler": OmegaConf.to_container(cfg.sampler, resolve=True) if cfg.get("sampler") else None,
                   "num_steps": cfg.num_steps, "t_start": float(cfg.t_start), "seed": int(cfg.seed),
                   "estimates": bool(cfg.estimates)}
    else:
        from edm_se.enhancers import make_peer

        model = make_peer(str(cfg.enhancer))
        options = {"sample_rate": int(cfg.sample_rate)}
    start = time.perf_counter()
    stats = enhance_files(model, files, root, Path(cfg.output), progress=bool(cfg.progress),
                          on_mismatch=str(cfg.on_rate_mismatch), resume=bool(cfg.resume),
                          oa_weight=float(cfg.oa_weight), **options)
    stats["total_seconds"] = time.perf_counter() - start
    stats.update({"checkpoint": model.info.get("path")} if diffusion else {"enhancer": str(cfg.enhancer)})
    if _all_done(stats, cfg.output):
        return
    how = f"-> {cfg.output}  NFE={stats['nfe']}" if diffusion else f"with {model.label} -> {cfg.output}"
    print(f"enhanced {_count(stats)} {how}  RTF={stats['rtf']:.3f} ({stats['wall_seconds']:.1f} s for "
          f"{stats['audio_seconds']:.1f} s of audio)")
    if cfg.estimates:
        est = Path(cfg.output) / "estimates"
        print(f"the clean estimate after each network call: {est}/nfe001 .. nfe{stats['nfe']:03d}/, sampling time "
              f"per call: {est}/steps.csv")
    log.info("%s", json.dumps(stats))


def _count(stats: dict) -> str:
    """``"3 file(s)"``, or ``"2 file(s) (1 more already done: resumed)"`` after a resume."""
    if not stats.get("skipped"):
        return f"{stats['files']} file(s)"
    return f"{stats['files'] - stats['skipped']} file(s) ({stats['skipped']} more already done: resumed)"


def _all_done(stats: dict, output: str) -> bool:
    """Print the line of a run that found every file done (and return True)."""
    if stats["files"] and stats.get("skipped") == stats["files"]:
        print(f"nothing to enhance: all {stats['files']} file(s) in {output} were enhanced with this configuration "
              "by an earlier run (resume=false redoes them)")
        return True
    return False
