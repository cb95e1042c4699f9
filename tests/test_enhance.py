"""Enhancement: CLI on real audio, Python API, chunking without seams, and bad checkpoints/inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO, run_cli, run_cli_many

import edm_se
from edm_se.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint
from edm_se.model import EnhancementModel


@pytest.fixture(scope="module")
def noisy_dir(tmp_path_factory):
    """Two real noisy test mixtures from the built-in test set, one resampled to 8 kHz."""
    from edm_se.data import builtin_test_set

    src = sorted((builtin_test_set() / "noisy").glob("*.flac"))[:2]
    out = tmp_path_factory.mktemp("noisy")
    for i, f in enumerate(src):
        wave, sr = sf.read(f, dtype="float32")
        if i == 1:
            import torchaudio.functional as AF

            wave = AF.resample(torch.from_numpy(wave), sr, 8000).numpy()
            sr = 8000
        sf.write(out / f"{f.stem}.wav", wave, sr)
    return out


def test_enhance_cli_writes_one_file_per_input(tiny_checkpoint, noisy_dir, tmp_path):
    out = tmp_path / "enh"
    res = run_cli("enhance", f"ckpt={tiny_checkpoint}", f"input={noisy_dir}", f"output={out}",
                  "sampler=edm_heun", "sampler.num_steps=3", "progress=false")
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"NFE=5\b", res.stdout), res.stdout
    assert "RTF=" in res.stdout
    inputs = sorted(p.name for p in noisy_dir.iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted([*inputs, "enhance.json", "enhance_done.jsonl"])
    for name in inputs:
        info_in, info_out = sf.info(noisy_dir / name), sf.info(out / name)
        assert info_out.samplerate == 16000
        assert abs(info_out.duration - info_in.duration) < 1e-3
        wave, _ = sf.read(out / name, dtype="float32")
        assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def test_directory_run_resumes_as_if_uninterrupted_and_refuses_another_configuration(tiny_checkpoint, noisy_dir,
                                                                                       tmp_path):
    import shutil

    from edm_se.audio import AudioError
    from edm_se.enhance import enhance_files, list_inputs

    inputs = tmp_path / "in"
    shutil.copytree(noisy_dir, inputs)
    model = edm_se.load(tiny_checkpoint, device="cpu")
    root, files = list_inputs(inputs)
    kw = dict(sampler="edm_heun_churn", num_steps=2, progress=False)  # stochastic: noise from the seed per file
    enhance_files(model, files, root, tmp_path / "ref", **kw)
    out = tmp_path / "out"
    real, calls = model.enhance, []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    model.enhance = interrupted
    with pytest.raises(KeyboardInterrupt):
        enhance_files(model, files, root, out, **kw)
    del model.enhance
    assert [p.name for p in out.glob("*.wav")] == [files[0].name]
    with open(out / "enhance_done.jsonl", "a") as fh:
        fh.write('{"file": "torn')  # an interrupted append: ignored
    stats = enhance_files(model, files, root, out, **kw)
    assert (stats["files"], stats["skipped"]) == (2, 1) and stats["audio_seconds"] > 0
    for f in files:  # bit for bit the uninterrupted run's files
        assert (out / f.name).read_bytes() == (tmp_path / "ref" / f.name).read_bytes()
    assert enhance_files(model, files, root, out, **kw)["skipped"] == 2
    wave, sr = sf.read(files[0], dtype="float32")
    sf.write(files[0], 0.5 * wave, sr)  # a changed input is enhanced again, the other is not
    assert enhance_files(model, files, root, out, **kw)["skipped"] == 1
    (out / files[1].name).unlink()  # so is a lost output
    assert enhance_files(model, files, root, out, **kw)["skipped"] == 1
    with pytest.raises(AudioError, match=r"another configuration \(sampler.num_steps: '2' then, '3' now\)"):
        enhance_files(model, files, root, out, sampler="edm_heun_churn", num_steps=3, progress=False)
    with pytest.raises(AudioError, match=r"\(seed: 0 then, 1 now\)"):
        enhance_files(model, files, root, out, seed=1, **kw)
    with pytest.raises(AudioError, match=r"\(checkpoint_sha256: '[0-9a-f]{64}' then, '[0-9a-f]{64}' now\)"):
        enhance_files(edm_se.load(device="cpu"), files, root, out, **kw)  # the bundled model: other weights
    stats = enhance_files(model, files, root, out, sampler="edm_heun_churn", num_steps=3, progress=False,
                          resume=False)
    assert stats["skipped"] == 0 and stats["nfe"] == 5
    assert enhance_files(model, files, root, out, sampler="edm_heun_churn", num_steps=3, progress=False,
                         )["skipped"] == 2


def test_output_file_and_read_only_input_formats(tiny_checkpoint, noisy_dir, tmp_path):
    """One input with an audio-suffixed output writes that file (no record); more inputs, or a suffix that cannot be
    written, are refused before any work; an .mp3 input in a directory comes out as .wav (it was an error after
    enhancing before)."""
    from edm_se.audio import AudioError
    from edm_se.enhance import enhance_files, list_inputs

    model = edm_se.load(tiny_checkpoint, device="cpu")
    root, files = list_inputs(noisy_dir)
    out = tmp_path / "one.flac"
    stats = enhance_files(model, files[:1], root, out, progress=False)
    assert stats["files"] == 1 and out.is_file() and sf.info(out).format == "FLAC"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.flac"]  # no record beside a single output file
    with pytest.raises(AudioError, match="an output file takes one input, not 2"):
        enhance_files(model, files, root, tmp_path / "two.wav", progress=False)
    with pytest.raises(AudioError, match=r"cannot write \.mp3"):
        enhance_files(model, files[:1], root, tmp_path / "one.mp3", progress=False)
    assert not (tmp_path / "two.wav").exists() and not (tmp_path / "one.mp3").exists()
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    mp3_dir = tmp_path / "mp3"
    mp3_dir.mkdir()
    wave, sr = sf.read(files[0], dtype="float32")
    sf.write(mp3_dir / "a.mp3", wave, sr, format="MP3")
    mp3_root, mp3_files = list_inputs(mp3_dir)
    enhance_files(model, mp3_files, mp3_root, tmp_path / "from_mp3", progress=False)
    assert (tmp_path / "from_mp3" / "a.wav").is_file()


def test_python_api_counts_nfe_and_resamples(tiny_checkpoint, noisy_dir):
    model = edm_se.load(tiny_checkpoint, device="cpu")
    wave, sr = sf.read(sorted(noisy_dir.glob("*.wav"))[1], dtype="float32")
    assert sr == 8000
    res = model.enhance(torch.from_numpy(wave), sr, sampler="euler", num_steps=3)
    assert res.nfe == 3
    assert res.sample_rate == 16000
    assert abs(res.waveform.shape[-1] - 2 * len(wave)) <= 2
    again = model.enhance(torch.from_numpy(wave), sr, sampler="euler", num_steps=3)
    torch.testing.assert_close(res.waveform, again.waveform)  # seeded: reproducible


def test_a_sampler_grid_that_cannot_be_made_stops_before_any_file(tiny_checkpoint, noisy_dir, tmp_path):
    """A Karras sigma_min above the SDE's largest noise level used to end in a ValueError traceback at the first
    file; it is one line before anything is written. One step needs no grid below the top and runs."""
    out = tmp_path / "o"
    res = run_cli("enhance", f"ckpt={tiny_checkpoint}", f"input={noisy_dir}", f"output={out}", "sampler=edm_heun",
                  "sampler.num_steps=4", "sampler.schedule.sigma_min=50", "progress=false")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert re.fullmatch(r"edm-se enhance: error: sampler: Karras schedule: sigma_min=50 must be below the largest "
                        r"noise level [0-9.]+ for num_steps > 1", res.stderr.strip()), res.stderr
    assert not out.exists()
    from edm_se.validate import ConfigError

    model = edm_se.load(tiny_checkpoint, device="cpu")
    karras = {"_target_": "edm_se.schedules.Karras", "sigma_min": 50.0}
    model.check_sampler("edm_heun", 1, schedule=karras)
    with pytest.raises(ConfigError, match="sigma_min=50 must be below"):
        model.check_sampler("edm_heun", 4, schedule=karras)


def test_python_api_names_a_channel_last_array_and_a_too_short_signal(tiny_checkpoint):
    """soundfile reads a stereo file as (L, 2): enhance used to fail inside the STFT's padding (a RuntimeError
    about padding size); a signal shorter than half a frame likewise. Both are a ValueError saying what is wrong;
    256 samples, the shortest signal, enhance."""
    model = edm_se.load(tiny_checkpoint, device="cpu")
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    with pytest.raises(ValueError, match=r"2 samples per signal at 16000 Hz \(shape \(4000, 2\)\), fewer than the 256 "
                                         r"of half an STFT frame; a channel-last array such as soundfile's \(L, C\)"):
        model.enhance(np.stack([x, x], axis=1), 16000)
    with pytest.raises(ValueError, match=r"255 samples per signal at 16000 Hz \(shape \(255,\)\), fewer than the "
                                         r"256 of half an STFT frame$"):
        model.enhance(x[:255], 16000)
    assert model.enhance(x[:256], 16000).waveform.shape == (256,)
    assert model.enhance(np.stack([x, x]), 16000).waveform.shape == (2, 4000)  # (B, L): a batch


def test_make_sampler_caches_by_name_and_returns_independent_copies(tiny_checkpoint):
    from edm_se.samplers import EDMHeun, Euler

    model = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    a = model.make_sampler("euler", 3)
    a.num_steps = 99  # a caller changing its copy must not change the next one
    b = model.make_sampler("euler", 3)
    assert isinstance(b, Euler) and b.num_steps == 3 and b is not a
    churn = model.make_sampler("edm_heun", 2, s_churn=0.5)
    assert isinstance(churn, EDMHeun) and churn.s_churn == 0.5 and churn.num_steps == 2
    assert model.make_sampler("edm_heun", 2).s_churn == 0.0
    assert model.make_sampler(None) is model.sampler
    with pytest.raises(KeyError, match="no_such"):
        model.make_sampler("euler", 3, no_such=1)


def test_chunked_processing_has_no_seams(tiny_checkpoint, monkeypatch):
    model = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    # An identity "enhancer" per block exposes any gap or double-counting in the overlap-add.
    monkeypatch.setattr(model, "_enhance_block", lambda x, *a: (x.clone(), 1, None))
    wave = torch.randn(16000 * 7 + 123)
    res = model.enhance(wave, 16000, chunk_seconds=2.0, overlap_seconds=0.5)
    torch.testing.assert_close(res.waveform, wave, rtol=0, atol=1e-5)


def test_chunks_side_by_side_and_a_short_tail(tiny_checkpoint, monkeypatch):
    """overlap_seconds=0 ended in a shape error (an empty cross-fade ramp over the whole chunk), and a tail
    shorter than half an STFT frame would reach the STFT alone; now chunks sit side by side, such a tail joins the
    chunk before it, and bad chunk arguments are named."""
    model = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    pieces = []

    def identity(x, *a):  # noqa: ANN001
        pieces.append(x.shape[-1])
        return x.clone(), 1, None

    monkeypatch.setattr(model, "_enhance_block", identity)
    wave = torch.randn(16000 * 3 + 100)  # three 1 s chunks and 100 samples (< 256, half of n_fft 510)
    res = model.enhance(wave, 16000, chunk_seconds=1.0, overlap_seconds=0.0)
    torch.testing.assert_close(res.waveform, wave, rtol=0, atol=0)
    assert pieces == [16000, 16000, 16100]
    pieces.clear()
    model.enhance(torch.randn(16000 * 3 + 300), 16000, chunk_seconds=1.0, overlap_seconds=0.0)
    assert pieces == [16000, 16000, 16000, 300]  # a tail the STFT can take stays a chunk of its own
    for kwargs, message in ((dict(chunk_seconds=0.0), "chunk_seconds must be a number of seconds > 0"),
                            (dict(overlap_seconds=-1.0), r"overlap_seconds must be in \[0, chunk_seconds=30\)"),
                            (dict(chunk_seconds=1.0, overlap_seconds=1.0), r"overlap_seconds must be in \[0, ")):
        with pytest.raises(ValueError, match=message):
            model.enhance(wave, 16000, **kwargs)


def test_estimates_of_every_call_through_the_model_and_across_chunks(tiny_checkpoint, noisy_dir):
    """``return_estimates=True`` gives one waveform per network call, the last equal to the output (EDM Heun ends on
    the denoiser's estimate); the output is unchanged by asking; a chunked input gives the cross-faded estimates of
    its chunks (the last again the output) and their sampling times summed."""
    model = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    wave, sr = sf.read(sorted(noisy_dir.glob("*.wav"))[0], dtype="float32")
    wave = torch.from_numpy(wave)
    plain = model.enhance(wave, sr, sampler="edm_heun", num_steps=3)
    res = model.enhance(wave, sr, sampler="edm_heun", num_steps=3, return_estimates=True)
    assert plain.estimates is None and torch.equal(res.waveform, plain.waveform)
    assert [e["nfe"] for e in res.estimates] == [1, 2, 3, 4, 5] == list(range(1, res.nfe + 1))
    for e in res.estimates:
        assert e["waveform"].shape == wave.shape and torch.isfinite(e["waveform"]).all()
    torch.testing.assert_close(res.estimates[-1]["waveform"], res.waveform, rtol=0, atol=1e-6)
    assert not torch.allclose(res.estimates[0]["waveform"], res.waveform, atol=1e-4)  # the steps do change it
    assert 0 < res.estimates[0]["seconds"] < res.estimates[-1]["seconds"] <= res.seconds
    assert res.estimates[0]["sigma"] > res.estimates[-1]["sigma"]
    chunked = model.enhance(wave, sr, sampler="edm_heun", num_steps=3, return_estimates=True, chunk_seconds=1.0,
                            overlap_seconds=0.25)
    assert len(chunked.estimates) == 5 and chunked.estimates[0]["waveform"].shape == wave.shape
    torch.testing.assert_close(chunked.estimates[-1]["waveform"], chunked.waveform, rtol=0, atol=1e-6)
    times = [e["seconds"] for e in chunked.estimates]
    assert times == sorted(times) and 0 < times[-1] <= chunked.seconds


def test_enhance_cli_writes_every_calls_estimate_and_its_time(tiny_checkpoint, noisy_dir, tmp_path):
    """`estimates=true`: estimates/nfe001..nfe005/ hold every file (the last equal to the output up to 16-bit
    rounding), steps.csv one row per file and call with growing times; a resumed run keeps steps.csv whole; a
    shorter run started anew removes the longer run's extra directories; peers and file outputs are refused."""
    import pandas as pd

    out = tmp_path / "enh"
    args = ("enhance", f"ckpt={tiny_checkpoint}", f"input={noisy_dir}", f"output={out}", "sampler=edm_heun",
            "progress=false", "estimates=true")
    res = run_cli(*args, "sampler.num_steps=3")
    assert res.returncode == 0, res.stderr[-3000:]
    names = sorted(p.name for p in noisy_dir.iterdir())
    est = out / "estimates"
    assert sorted(p.name for p in est.iterdir()) == [f"nfe{k:03d}" for k in range(1, 6)] + ["steps.csv"]
    for k in range(1, 6):
        assert sorted(p.name for p in (est / f"nfe{k:03d}").iterdir()) == names
    for name in names:
        last, _ = sf.read(est / "nfe005" / name, dtype="float32")
        final, _ = sf.read(out / name, dtype="float32")
        np.testing.assert_allclose(last, final, atol=2 / 32768)
    steps = pd.read_csv(est / "steps.csv")
    assert list(steps.columns) == ["file", "nfe", "t", "sigma", "seconds"] and len(steps) == 5 * len(names)
    for _, rows in steps.groupby("file"):
        assert rows["nfe"].tolist() == [1, 2, 3, 4, 5] and rows["seconds"].is_monotonic_increasing
        assert rows["sigma"].is_monotonic_decreasing
    again, peer, one = run_cli_many(
        [*args, "sampler.num_steps=3"],
        ["enhance", "enhancer=noisereduce", f"input={noisy_dir}", f"output={tmp_path / 'p'}", "estimates=true"],
        ["enhance", f"ckpt={tiny_checkpoint}", f"input={sorted(noisy_dir.iterdir())[0]}",
         f"output={tmp_path / 'one.wav'}", "estimates=true"])
    assert again.returncode == 0 and "nothing to enhance" in again.stdout
    assert pd.read_csv(est / "steps.csv").equals(steps)
    assert peer.returncode == 2 and "makes no network calls" in peer.stderr
    shorter = run_cli(*args, "sampler.num_steps=2", "resume=false")
    assert shorter.returncode == 0, shorter.stderr[-3000:]
    assert sorted(p.name for p in est.iterdir()) == ["nfe001", "nfe002", "nfe003", "steps.csv"]
    assert one.returncode == 2 and "name a directory as output" in one.stderr


def test_a_run_directory_as_checkpoint_names_the_checkpoints_in_it(tmp_path):
    """`ckpt=runs/x` (the run directory) suggested `runs/x/last.pt`, which a trainer never writes; the message now
    names the checkpoints that are there (`checkpoints/best.pt`, `checkpoints/last.pt`)."""
    from edm_se.checkpoint import CheckpointError, load_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"run: is a directory, expected a checkpoint file \(e\.g\. .*/run/"
                                              r"checkpoints/last\.pt of a training run\)$"):
        load_checkpoint(run)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "checkpoints" / "best.pt").write_bytes(b"x")
    for where in (run, run / "checkpoints"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(where)
        assert str(info.value) == (f"{where}: is a directory, expected a checkpoint file (here: "
                                   f"{run}/checkpoints/best.pt or {run}/checkpoints/last.pt)")


def test_missing_checkpoint_is_one_line_and_writes_nothing(noisy_dir, tmp_path):
    out = tmp_path / "enh"
    res = run_cli("enhance", f"ckpt={tmp_path}/nope.pt", f"input={noisy_dir}", f"output={out}")
    assert res.returncode == 2
    assert res.stderr.strip() == f"edm-se enhance: error: {tmp_path}/nope.pt: checkpoint not found"
    assert not out.exists()


def test_corrupt_checkpoint(tiny_checkpoint, noisy_dir, tmp_path):
    """A file that is no torch file at all is named as such (torch.load's own error for it is `KeyError: '101'`);
    a truncated checkpoint keeps torch's reason."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:4000])
    cases = ((bad, "not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts with b'\\x00gar')"),
             (truncated, "not a readable checkpoint (PytorchStreamReader failed reading zip archive"))
    runs = run_cli_many(*(["enhance", f"ckpt={ckpt}", f"input={noisy_dir}", f"output={tmp_path / 'o'}"]
                          for ckpt, _ in cases))
    for res, (ckpt, why) in zip(runs, cases):
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip().startswith(f"edm-se enhance: error: {ckpt}: {why}"), res.stderr
        assert not (tmp_path / "o").exists()


def test_checkpoint_from_another_config(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt["config"]["net"]["emb_channels"] = int(ckpt["config"]["net"]["emb_channels"]) * 2
    other = atomic_torch_save(ckpt, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        EnhancementModel.from_checkpoint(other, device="cpu")


def test_bad_input_file_stops_before_writing(tiny_checkpoint, noisy_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in noisy_dir.iterdir():
        (inputs / f.name).write_bytes(f.read_bytes())
    (inputs / "zz_broken.wav").write_bytes(b"this is not audio")
    out = tmp_path / "enh"
    res = run_cli("enhance", f"ckpt={tiny_checkpoint}", f"input={inputs}", f"output={out}")
    assert res.returncode == 2
    assert "zz_broken.wav" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_no_input_is_overwritten_and_no_output_written_twice(tiny_checkpoint, noisy_dir, tmp_path):
    """Enhancing in place (output = the input file or directory) used to replace the noisy input by its
    enhancement, and x.wav beside x.mp3 (both written as x.wav) kept only the last one: both are refused with one
    line before any work, the inputs unchanged. An output directory inside the input directory is not searched for
    inputs, so a re-run resumes instead of enhancing the last run's outputs."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in noisy_dir.iterdir():
        (inputs / f.name).write_bytes(f.read_bytes())
    before = {f.name: f.read_bytes() for f in inputs.iterdir()}
    first = sorted(inputs.iterdir())[0]
    # a directory of one file, output= that file: "the directory holds no audio file" (the output was left out)
    single = tmp_path / "single"
    single.mkdir()
    alone = single / first.name
    alone.write_bytes(first.read_bytes())
    pairs = ((inputs, inputs, first), (first, first, first), (first, inputs, first), (single, alone, alone))
    runs = run_cli_many(*(["enhance", f"ckpt={tiny_checkpoint}", f"input={inp}", f"output={out}", "progress=false"]
                          for inp, out, _ in pairs))
    for res, (inp, out, named) in zip(runs, pairs):
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip() == (f"edm-se enhance: error: {named}: enhancing it into {out} would overwrite "
                                      "this input: name another output")
    assert {f.name: f.read_bytes() for f in inputs.iterdir()} == before  # nothing written, nothing replaced
    assert alone.read_bytes() == first.read_bytes()

    from edm_se.audio import AudioError
    from edm_se.enhance import plan_outputs

    with pytest.raises(AudioError, match=r"out/x\.wav: .*x\.mp3 and .*x\.wav would both be written to this file"):
        plan_outputs([tmp_path / "x.mp3", tmp_path / "x.wav"], tmp_path, tmp_path / "out")
    assert plan_outputs([tmp_path / "a" / "x.mp3", tmp_path / "x.flac"], tmp_path, tmp_path / "out") == [
        tmp_path / "out" / "a" / "x.wav", tmp_path / "out" / "x.flac"]

    inside = inputs / "enhanced"
    args = ("enhance", f"ckpt={tiny_checkpoint}", f"input={inputs}", f"output={inside}", "progress=false")
    res, again = run_cli_many(args, args)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in inside.glob("*.wav")) == sorted(before)
    assert again.returncode == 0 and f"nothing to enhance: all {len(before)} file(s)" in again.stdout
    assert f"{len(before)} audio file(s) under the output {inside} are not taken as inputs" in (again.stdout +
                                                                                              again.stderr)
    assert not (inside / "enhanced").exists()


def test_export_keeps_weights_and_sets_default_sampler(tiny_checkpoint, tmp_path):
    """python -m edm_se.export: EMA weights only, the chosen default sampler, same enhancement as the source."""
    from edm_se.export import export_checkpoint

    dest = export_checkpoint(tiny_checkpoint, tmp_path / "small.pt", sampler="euler", num_steps=3, note="test")
    small = load_checkpoint(dest)
    assert "optimizer" not in small and small["config"]["sampler"]["num_steps"] == 3
    assert dest.stat().st_size < tiny_checkpoint.stat().st_size
    a = EnhancementModel.from_checkpoint(tiny_checkpoint, device="cpu")
    b = EnhancementModel.from_checkpoint(dest, device="cpu")
    wave = torch.randn(8000) * 0.1
    ra = a.enhance(wave, 16000, sampler="euler", num_steps=3, seed=0)
    rb = b.enhance(wave, 16000, seed=0)
    assert rb.nfe == 3
    torch.testing.assert_close(ra.waveform, rb.waveform)


def test_rate_mismatch_can_be_refused(tiny_checkpoint, noisy_dir, tmp_path):
    """on_rate_mismatch=error: the 8 kHz input is refused with one line naming it, and nothing is written."""
    out = tmp_path / "enh"
    res = run_cli("enhance", f"ckpt={tiny_checkpoint}", f"input={noisy_dir}", f"output={out}",
                  "on_rate_mismatch=error", "progress=false")
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "8000" in line and ".wav" in line and "Traceback" not in line
    assert not out.exists() or not any(out.iterdir())


def test_bundled_model_numbers_are_reproduced_from_the_committed_checkpoint_and_test_set():
    """The README's bundled-model table (studies/results/bundled/quality.json) belongs to the shipped checkpoint and
    the shipped test set (same SHA-256), re-measuring gives the same numbers, and the claims made from it hold: a
    paired PESQ and SI-SDR gain whose 95% CI excludes 0, and the ESTOI loss the README reports."""
    import json

    from edm_se import metrics as M
    from edm_se.audio import load_audio
    from edm_se.model import default_checkpoint_path
    from edm_se.provenance import file_sha256
    from edm_se.testset import load_test_set

    record = json.loads((REPO / "studies" / "results" / "bundled" / "quality.json").read_text())
    test = load_test_set()
    assert record["checkpoint"]["sha256"] == file_sha256(default_checkpoint_path())
    assert record["test_set"]["sha256"] == test.identity()["sha256"]
    model = edm_se.load(device="cpu")
    refs, noisies, ests = [], [], []
    for name in test.names:
        clean = load_audio(test.clean(name)).numpy()
        noisy = load_audio(test.noisy(name))
        refs.append(clean)
        noisies.append(noisy.numpy())
        ests.append(model.enhance(noisy, 16000, seed=0).waveform.numpy())
    before, _ = M.score_pairs(refs, noisies, num_workers=1, progress=False)
    after, _ = M.score_pairs(refs, ests, num_workers=1, progress=False)
    table = record["table"]["all"]
    for metric in ("pesq", "estoi", "si_sdr"):
        delta = M.mean_ci95(list(after[metric] - before[metric]))
        assert delta["mean"] == pytest.approx(table[f"{metric}_delta"]["mean"], abs=5e-3), metric
        assert after[metric].mean() == pytest.approx(table[f"{metric}_enhanced"]["mean"], abs=5e-3), metric
        if metric in ("pesq", "si_sdr"):
            assert delta["mean"] - delta["ci95"] > 0, (metric, delta)  # a significant gain
        else:
            assert delta["mean"] < 0  # the README says plainly: ESTOI is slightly lower than the noisy input's


