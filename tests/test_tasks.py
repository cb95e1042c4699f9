"""Downstream tasks and training paradigms: sample weights, gradient calibration, which model moves when, task
models that learn real (synthesised) speech, every paradigm on two SDE x preconditioning pairs, and a bit-exact
resume of a two-model paradigm after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edm_se.checkpoint import CheckpointError, load_checkpoint
from edm_se.provenance import file_sha256
from edm_se.tasks.models import CTCRecognizer, M5, TaskTargets, encode_text, greedy_ctc_decode
from edm_se.tasks.paradigms import (PARADIGMS, calibrate_gradient, importance_weights, srpr_alpha_gradient)

from conftest import (REPO, TINY_TRAIN, edm_se_cmd, run_two_processes, shared_lock, sigkill_at_checkpoint,
                      trainer_and_batches)


@pytest.fixture(scope="session")
def task_root(tmp_path_factory) -> Path:
    """A small task corpus: the flite voices kal16 (train, 6 variants: F0 90 Hz x 2 stretches x 3 pitch factors)
    and rms (valid), 6 sentences each (a few seconds)."""
    from edm_se.tasks.data import build_task_corpus

    out = tmp_path_factory.mktemp("tasks")
    with shared_lock("corpus"):  # the corpus's download cache is shared with its build
        return build_task_corpus(out, cache_dir=REPO / "data_cache" / "corpus" / ".cache", voices=["kal16", "rms"],
                                 max_sentences=6, max_variants=6, progress=False)


# ----------------------------------------------------------------------------------------------- pure math
def test_importance_weights_are_nonnegative_sum_to_one_and_follow_the_task_loss():
    losses = torch.tensor([0.5, 2.0, 0.0, 1.5])
    w = importance_weights(losses)
    assert bool((w >= 0).all()) and abs(float(w.sum()) - 1.0) < 1e-6
    torch.testing.assert_close(w, losses / 4.0)  # w_i = L_i / sum_j L_j (Milling et al. 2024, eq. 2-3)
    assert torch.equal(torch.argsort(w), torch.argsort(losses))
    assert not w.requires_grad
    torch.testing.assert_close(importance_weights(torch.zeros(4)), torch.full((4,), 0.25))
    with pytest.raises(ValueError, match=">= 0"):
        importance_weights(torch.tensor([1.0, -0.1]))


def test_gradient_calibration_against_a_hand_computation():
    g_reg = [torch.tensor([1.0, 1.0]), torch.tensor([0.0])]
    # not conflicting (<g, g_reg> = 3 > 0): unchanged
    same, a = calibrate_gradient([torch.tensor([1.0, 2.0]), torch.tensor([3.0])], g_reg)
    assert a == 0.0 and torch.equal(same[0], torch.tensor([1.0, 2.0])) and torch.equal(same[1], torch.tensor([3.0]))
    # conflicting: <g, g_reg> = -2 + 1 = -1, |g_reg|^2 = 2, a = 0.5, g' = g + 0.5 g_reg
    g = [torch.tensor([-2.0, 1.0]), torch.tensor([0.5])]
    out, a = calibrate_gradient(g, g_reg)
    assert a == pytest.approx(0.5)
    torch.testing.assert_close(out[0], torch.tensor([-1.5, 1.5]))
    torch.testing.assert_close(out[1], torch.tensor([0.5]))
    # exactly the conflicting component is gone: g' is orthogonal to g_reg, the orthogonal part is kept
    assert float(sum((x * y).sum() for x, y in zip(out, g_reg))) == pytest.approx(0.0, abs=1e-7)
    assert float(out[0][0] - out[0][1]) == pytest.approx(float(g[0][0] - g[0][1]))


def test_srpr_alpha_gradient_is_the_derivative_of_the_distance_to_the_calibrated_step():
    torch.manual_seed(0)
    g_task, g_reg = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    proj, alpha = 0.3, torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    dist = ((g_task + proj * g_reg - alpha * g_reg) ** 2).sum()
    (auto,) = torch.autograd.grad(dist, alpha)
    ours = srpr_alpha_gradient(float(g_task @ g_reg), proj, float(g_reg @ g_reg), 0.7)
    assert ours == pytest.approx(float(auto), rel=1e-12)


# ----------------------------------------------------------------------------------------------- task models
def _clips(task_root: Path, voice: str = "kal16"):
    import soundfile as sf

    from edm_se.tasks.data import read_task_manifest

    rows = [r for r in read_task_manifest(task_root / "keywords" / "manifest.csv") if r["voice"] == voice]

    def load(r, n=8000):
        x, _ = sf.read(str(task_root / "keywords" / r["path"]), dtype="float32")
        y = np.zeros(n, np.float32)
        y[:min(n, len(x))] = x[:n]
        return y

    return rows, load


def test_espeak_voices_synthesise_every_digit_in_the_training_split(tmp_path):
    """espeak-ng from Debian's packages (extracted, not installed): each digit at two tempi of its first voice, all
    training data, spoken (not silent, under 2 s), the slower tempo longer."""
    import soundfile as sf

    from edm_se.tasks.data import build_task_corpus, read_task_manifest

    with shared_lock("corpus"):
        out = build_task_corpus(tmp_path / "t", cache_dir=REPO / "data_cache" / "corpus" / ".cache",
                                voices=["espeak"], max_variants=2, tasks=["keywords"], progress=False)
    rows = read_task_manifest(out / "keywords" / "manifest.csv")
    assert len(rows) == 20 and {r["split"] for r in rows} == {"train"} and {r["voice"] for r in rows} == {"espeak"}
    assert sorted({r["label"] for r in rows}) == list(range(10))
    assert {r["variant"] for r in rows} == {"en-us_m1-0.85", "en-us_m1-1.15"}
    waves = {(r["text"], r["variant"]): sf.read(out / "keywords" / r["path"])[0] for r in rows}
    assert all(0.15 < len(w) / 16000 < 2.0 and np.sqrt(np.mean(w ** 2)) > 0.03 for w in waves.values())
    fast, slow = waves[("seven", "en-us_m1-1.15")], waves[("seven", "en-us_m1-0.85")]
    assert len(fast) > len(slow) * 1.15  # the 1.15 stretch speaks slower


def test_sentence_takes_speak_each_training_sentence_in_distinct_variants(tmp_path):
    """sentence_takes=2: every training sentence twice per training voice, in two different variants (the next two
    of the cycle); the held-out voice still speaks each sentence once; takes < 1 is refused."""
    from edm_se.tasks.data import TaskDataError, build_task_corpus, read_task_manifest

    with shared_lock("corpus"):
        out = build_task_corpus(tmp_path / "t", cache_dir=REPO / "data_cache" / "corpus" / ".cache",
                                voices=["kal16", "rms"], max_sentences=3, max_variants=4, tasks=["sentences"],
                                sentence_takes=2, progress=False)
    rows = read_task_manifest(out / "sentences" / "manifest.csv")
    train = [r for r in rows if r["split"] == "train"]
    texts = {r["text"] for r in train}
    assert len(texts) == 3 and len(train) == 6
    for t in texts:
        takes = [r["variant"] for r in train if r["text"] == t]
        assert len(takes) == 2 and len(set(takes)) == 2, takes
    import collections

    # the cycle of the 4 variants, two at a time: v0 v1 | v2 v3 | v0 v1
    assert collections.Counter(r["variant"] for r in train) == {"90-0.9-0.94": 2, "90-0.9-1": 2, "90-0.9-1.06": 1,
                                                                "90-1.1-0.94": 1}
    valid = [r for r in rows if r["split"] == "valid"]
    assert len(valid) == 3 and {r["variant"] for r in valid} == {"base"}
    with pytest.raises(TaskDataError, match="sentence_takes"):
        build_task_corpus(tmp_path / "u", voices=["kal16"], sentence_takes=0, progress=False)


def test_instance_norm_m5_scores_each_example_alone_in_either_mode():
    """norm=instance: an example's logits do not depend on the rest of the batch or on train/eval mode (no running
    statistics to mismatch); the paper's batch norm depends on both."""
    torch.manual_seed(0)
    x = torch.randn(4, 8000)
    for norm, coupled in (("instance", False), ("batch", True)):
        m = M5(num_classes=10, channels=8, norm=norm).train()
        alone = m(x[:1])
        together = m(x)[:1]
        m.eval()
        evaluated = m(x[:1])
        assert torch.allclose(alone, together, atol=1e-5) is not coupled, norm
        assert torch.allclose(alone, evaluated, atol=1e-5) is not coupled, norm
    assert not any(isinstance(b, torch.Tensor) for b in M5(10, 8, norm="instance").buffers())
    with pytest.raises(ValueError, match="norm must be one of"):
        M5(10, norm="layer")


def test_task_scores_of_a_clip_do_not_depend_on_its_batch():
    """evaluate_task batches clips of one length only: each prediction equals the clip scored alone. Zero padding to
    the batch's longest clip (the old way) changes the instance-norm M5's logits, so that check can fail."""
    from edm_se.tasks.evaluate import evaluate_task

    torch.manual_seed(0)
    m = M5(num_classes=10, channels=8, norm="instance")
    g = np.random.default_rng(0)
    waves = [g.standard_normal(n).astype(np.float32) for n in (4000, 9000, 4000, 6500, 9000, 5200)]
    items = [{"name": f"c{i}", "snr_db": 0.0, "label": i % 10} for i in range(len(waves))]
    together = [r["prediction"] for r in evaluate_task(m, items, waves, batch_size=16)["per_file"]]
    alone = [r["prediction"] for r in evaluate_task(m, items, waves, batch_size=1)["per_file"]]
    with torch.no_grad():
        direct = [int(m.predict(m(torch.from_numpy(w)[None]))[0]) for w in waves]
        padded = m(torch.tensor(np.stack([np.pad(w, (0, 9000 - len(w))) for w in waves])))
    assert together == alone == direct
    with torch.no_grad():  # what padding would have done: other logits for the short clips
        short = m(torch.from_numpy(waves[0])[None])[0]
    assert not torch.allclose(short, padded[0], atol=1e-3)


def test_m5_learns_real_spoken_digits_in_seconds(task_root):
    rows, load = _clips(task_root)
    train = [r for r in rows if not r["variant"].endswith("-1")]  # pitch factors 0.94, 1.06
    test = [r for r in rows if r["variant"].endswith("-1")]  # held-out takes: pitch factor 1.0
    assert {r["label"] for r in test} == set(range(10))
    x_tr = torch.tensor(np.stack([load(r) for r in train]))
    y_tr = torch.tensor([r["label"] for r in train])
    torch.manual_seed(0)
    model = M5(10, channels=16)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(70):
        i = torch.randint(0, len(train), (16,))
        loss = model.per_example_loss(model(x_tr[i]), TaskTargets(labels=y_tr[i]))
        assert loss.shape == (16,)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.mean().detach()))
    model.eval()
    with torch.no_grad():
        pred = model.predict(model(torch.tensor(np.stack([load(r) for r in test]))))
    acc = model.metric(pred, TaskTargets(labels=torch.tensor([r["label"] for r in test])))["accuracy"]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert acc >= 0.5, acc  # chance is 0.1


def test_ctc_text_round_trip_and_greedy_decoding():
    ids = encode_text("Seven, the Rabbit!")
    assert greedy_ctc_decode([j for i in ids for j in (i, 0)]) == "seven the rabbit"  # a blank after each
    assert greedy_ctc_decode(ids) == "seven the rabit"  # without blanks the double b merges, as CTC defines
    # repeats merge unless a blank separates them; blanks vanish
    assert greedy_ctc_decode([0, 12, 12, 0, 12, 5, 5, 0, 0]) == "kkd"


def test_ctc_recogniser_learns_real_sentences(task_root):
    import soundfile as sf

    from edm_se.tasks.data import read_task_manifest

    rows = [r for r in read_task_manifest(task_root / "sentences" / "manifest.csv", "train")][:3]
    waves = [sf.read(str(task_root / "sentences" / r["path"]), dtype="float32")[0] for r in rows]
    n = max(len(w) for w in waves)
    x = torch.tensor(np.stack([np.pad(w, (0, n - len(w))) for w in waves]))
    target = TaskTargets(texts=[r["text"] for r in rows])
    torch.manual_seed(0)
    model = CTCRecognizer(channels=32, hidden=64, layers=1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(80):
        loss = model.per_example_loss(model(x), target)
        assert loss.shape == (3,)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.mean().detach()))
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    model.eval()
    with torch.no_grad():
        scores = model.metric(model.predict(model(x)), target)
    assert scores["cer"] < 80.0, scores  # an empty output scores 100 (measured: 55 after 80 steps)


def test_ctc_spec_augment_masks_in_training_only():
    torch.manual_seed(0)
    plain = CTCRecognizer(channels=16, hidden=16, layers=1)
    aug = CTCRecognizer(channels=16, hidden=16, layers=1, freq_masks=2, time_masks=2, freq_mask_width=8,
                        time_mask_width=20)
    aug.load_state_dict(plain.state_dict())  # masking has no weights: the same model with and without it
    x = torch.randn(4, 16000)
    plain.eval(), aug.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), aug(x))  # eval mode: no masks
    feats = torch.ones(64, 40, 101)
    masked = aug.spec_augment(feats)
    zero_bands = (masked == 0).all(dim=2).sum(dim=1)  # (B,) bands masked over all frames
    zero_frames = (masked == 0).all(dim=1).sum(dim=1)  # (B,) frames masked over all bands
    assert int(zero_bands.max()) <= 2 * 7 and int(zero_frames.max()) <= 2 * 19  # widths drawn from [0, width)
    assert int(zero_bands.sum()) > 0 and int(zero_frames.sum()) > 0
    assert len({tuple(z.tolist()) for z in (masked[:, :, 0] == 0)}) > 1  # every example its own masks
    off = (masked != 0)
    assert torch.equal(masked[off], feats[off])  # the rest untouched
    aug.train()
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    assert torch.equal(a, aug(x))  # drawn from torch's global generator: reproducible under a seed
    assert not torch.equal(a, plain.train()(x))
    with pytest.raises(ValueError, match="freq_mask_width"):
        CTCRecognizer(n_mels=40, freq_mask_width=41)
    with pytest.raises(ValueError, match="time_masks"):
        CTCRecognizer(time_masks=-1)


# ----------------------------------------------------------------------------------------------- paradigms
def _cfg(tmp_path, task_root, paradigm, *overrides, data="keywords"):
    from hydra import compose, initialize_config_dir

    from edm_se.cli import conf_dir

    base = [*TINY_TRAIN, f"data={data}", f"data.root={task_root}", "data.train.noise=builtin:train",
            "data.valid.noise=builtin:valid", f"paradigm={paradigm}", f"run_dir={tmp_path / paradigm}"]
    if paradigm != "denoising":
        base += ["paradigm.task.channels=8"] if data == "keywords" else []
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose(config_name="train", overrides=[*base, *overrides])


def _snap(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _gen(step=0):
    return torch.Generator().manual_seed(1000 + step)


def test_iterative_freezes_the_enhancer_in_the_task_step_and_the_task_model_in_the_enhancer_step(
        tmp_path, task_root, monkeypatch):
    tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, "iterative"))
    para = tr.paradigm
    events = []
    task_update, enhancer_update = para.task_update, tr.enhancer_update

    def spy_task(loss):
        enh, task = _snap(tr.denoiser), _snap(para.task)
        out = task_update(loss)
        events.append(("task step", _same(enh, _snap(tr.denoiser)), _same(task, _snap(para.task))))
        return out

    def spy_enhancer(loss, grads=None):
        enh, task = _snap(tr.denoiser), _snap(para.task)
        out = enhancer_update(loss, grads)
        events.append(("enhancer step", _same(enh, _snap(tr.denoiser)), _same(task, _snap(para.task))))
        return out

    monkeypatch.setattr(para, "task_update", spy_task)
    monkeypatch.setattr(tr, "enhancer_update", spy_enhancer)
    for k in range(2):
        para.step(next(batches), _gen(k))
    # per batch: first the task step (enhancer unchanged, task moved), then the enhancer step (the reverse)
    assert events == [("task step", True, False), ("enhancer step", False, True)] * 2


def test_iterative_weights_the_enhancer_loss_by_the_task_loss(tmp_path, task_root, monkeypatch):
    import edm_se.tasks.paradigms as P

    tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, "iterative", "trainer.batch_size=4"))
    seen = {}
    weights_fn = P.importance_weights

    def spy(losses):
        seen["task_losses"] = losses.clone()
        seen["w"] = weights_fn(losses)
        return seen["w"]

    monkeypatch.setattr(P, "importance_weights", spy)
    enhancer_update, real_loss = tr.enhancer_update, tr.loss_fn

    def spy_update(loss, grads=None):
        seen["loss"] = loss.detach()
        return enhancer_update(loss, grads)

    def spy_loss(*args, **kwargs):
        seen.setdefault("calls", []).append(real_loss(*args, **kwargs))
        return seen["calls"][-1]

    monkeypatch.setattr(tr, "enhancer_update", spy_update)
    monkeypatch.setattr(tr, "loss_fn", spy_loss)
    tr.paradigm.step(next(batches), _gen())
    per_example = seen["calls"][0][0].detach().float()  # the enhancer's per-example denoising losses
    assert seen["w"].shape == (4,) and abs(float(seen["w"].sum()) - 1) < 1e-6
    torch.testing.assert_close(seen["w"], seen["task_losses"] / seen["task_losses"].sum())
    torch.testing.assert_close(seen["loss"], (seen["w"] * per_example).sum())


def _enhancer_after_one_multitask_step(tmp_path, task_root, weight):
    torch.manual_seed(0)
    tr, batches = trainer_and_batches(_cfg(tmp_path / f"w{weight}", task_root, "multi_task",
                                           f"paradigm.loss_weight={weight}"))
    before = _snap(tr.denoiser)
    tr.paradigm.step(next(batches), _gen())
    return before, _snap(tr.denoiser)


def test_multi_task_gradients_reach_the_enhancer_and_cold_cascade_ones_do_not(tmp_path, task_root):
    b0, a0 = _enhancer_after_one_multitask_step(tmp_path, task_root, 0.0)
    b1, a1 = _enhancer_after_one_multitask_step(tmp_path, task_root, 1.0)
    assert _same(b0, b1)  # same start
    assert not _same(a0, a1)  # the task term changed the enhancer's update
    for name in ("cold_cascade", "cold_cascade_da"):
        tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, name))
        enh, task = _snap(tr.denoiser), _snap(tr.paradigm.task)
        tr.paradigm.step(next(batches), _gen())
        assert _same(enh, _snap(tr.denoiser)) and not _same(task, _snap(tr.paradigm.task)), name
        assert all(p.grad is None for p in tr.denoiser.parameters()), name
        assert not any(p.requires_grad for p in tr.denoiser.parameters()), name
    front = tr.paradigm._front.model.parts.denoiser  # cold_cascade_da's diffusion front end: frozen, no grad
    assert all(p.grad is None for p in front.parameters())


PAIRS = {"oucosine+edm": ["sde=oucosine", "sde.theta=0.0", "precond=edm", "loss=edm"],
         "ouve+sgmse": ["sde=ouve", "precond=sgmse", "loss=sgmse"]}


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("name", sorted(set(PARADIGMS) - {"blackbox_iterative", "cold_cascade_da"}))
def test_every_paradigm_composes_with_two_sde_precond_pairs(tmp_path, task_root, name, pair):
    tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, name, *PAIRS[pair]))
    para = tr.paradigm
    enh = _snap(tr.denoiser)
    task = _snap(para.task) if hasattr(para, "task") else None
    values = para.step(next(batches), _gen())
    assert np.isfinite(values["loss"]), values
    assert _same(enh, _snap(tr.denoiser)) != para.trains_enhancer, name
    if task is not None:
        moved = not _same(task, _snap(para.task))
        assert moved == (para.train_task and name != "d4am"), name  # d4am never steps its task model


def test_d4am_methods_combine_the_gradients_as_named(tmp_path, task_root, monkeypatch):
    from edm_se.tasks import paradigms as P

    captured = {}
    for method in P.D4AM.METHODS:
        tr, batches = trainer_and_batches(_cfg(tmp_path / method, task_root, "d4am", f"paradigm.method={method}",
                                    "paradigm.alpha=0.5"))
        monkeypatch.setattr(tr, "enhancer_update", lambda loss, grads=None: captured.__setitem__(method, grads)
                            or 0.0)
        calls = []
        calibrate = P.calibrate_gradient
        monkeypatch.setattr(P, "calibrate_gradient", lambda a, b: calls.append(1) or calibrate(a, b))
        out = tr.paradigm.step(next(batches), _gen())
        assert bool(calls) == (method in ("GCLB", "D4AM")), method
        assert (out["alpha"] != 0.5) == (method in ("SRPR", "D4AM")), (method, out["alpha"])  # learned alpha
        monkeypatch.setattr(P, "calibrate_gradient", calibrate)
    # same batch and weights: CLSO is the task gradient alone, SRPR adds 0.5 x the regression gradient
    g_clso, g_srpr = (list(captured[m].values()) for m in ("CLSO", "SRPR"))
    assert any(not torch.equal(a, b) for a, b in zip(g_clso, g_srpr))


def test_blackbox_iterative_weights_by_cached_per_utterance_wer(tmp_path, task_root, monkeypatch):
    tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, "blackbox_iterative", "trainer.batch_size=3",
                                "data.train.segment_seconds=4.08", data="sentences"))
    para = tr.paradigm
    calls = []
    monkeypatch.setattr(para, "_wer", lambda wave, text: calls.append(text) or float(10 * len(calls)))
    batch = next(batches)
    para.step(batch, _gen())
    assert len(calls) == 3
    assert [para.cache[n][1] for n in batch["name"]] == [10.0, 20.0, 30.0]
    para.step(batch, _gen(1))  # the same examples in the same epoch: served from the cache
    assert len(calls) == 3
    tr.step += 10 ** 6  # a later epoch: recomputed
    para.step(batch, _gen(2))
    assert len(calls) == 6


def test_blackbox_iterative_names_the_example_whose_wer_is_undefined(tmp_path, task_root, monkeypatch):
    tr, batches = trainer_and_batches(_cfg(tmp_path, task_root, "blackbox_iterative", "trainer.batch_size=2",
                                "data.train.segment_seconds=4.08", data="sentences"))
    batch = next(batches)
    monkeypatch.setattr(tr.paradigm, "_wer", lambda wave, text: float("nan"))  # asr.wer of a wordless reference
    with pytest.raises(ValueError, match=f"example {re.escape(batch['name'][0])}: its transcript .* no words"):
        tr.paradigm.step(batch, _gen())


def test_spoken_text_keeps_parenthesised_words_and_drops_wordless_clauses():
    from edm_se.asr import normalise_text
    from edm_se.tasks.data import spoken_text

    # the book's parentheses are spoken; the WER normaliser would delete their words as annotations
    assert normalise_text("(though she very seldom followed it),") == ""
    assert spoken_text("(though she very seldom followed it),") == "though she very seldom followed it,"
    assert normalise_text(spoken_text("I should think!' (Dinah was the cat.) 'I hope")) == \
        "i should think dinah was the cat i hope"
    assert spoken_text("* * * * * * * * * *") == ""
    assert spoken_text("Down, down, down.") == "Down, down, down."


def test_sentence_dataset_leaves_out_transcripts_without_words(tmp_path, task_root):
    import csv

    from edm_se.tasks.data import TaskMixingDataset, read_task_manifest

    rows = read_task_manifest(task_root / "sentences" / "manifest.csv")
    manifest = tmp_path / "sentences" / "manifest.csv"
    manifest.parent.mkdir()
    (tmp_path / "sentences" / "kal16").symlink_to(task_root / "sentences" / "kal16")
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        train = [r for r in rows if r["split"] == "train"]
        for i, r in enumerate(train):
            w.writerow({**r, "text": "* * *" if i == 0 else r["text"]})
    ds = TaskMixingDataset(manifest, "train", "builtin:train", target="text")
    assert len(ds.rows) == len(train) - 1
    assert train[0]["path"] not in {r["path"] for r in ds.rows}


def test_paradigm_run_resumes_bit_exactly_after_sigkill(tmp_path, task_root):
    steps = 6
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = lambda d: ["train", f"run_dir={d}", f"trainer.max_steps={steps}", "trainer.ckpt_every=2", *TINY_TRAIN,  # noqa: E731
                      "data=keywords", f"data.root={task_root}", "data.train.noise=builtin:train",
                      "data.valid.noise=builtin:valid", "paradigm=iterative", "paradigm.task.channels=8"]
    ref = tmp_path / "ref"
    res = subprocess.run(edm_se_cmd(*args(ref)), capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen(edm_se_cmd(*args(run)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=REPO)
    last = run / "checkpoints" / "last.pt"
    killed = sigkill_at_checkpoint(proc, last, 2, steps)
    if killed is None:
        pytest.skip("training finished before it could be killed")
    res = subprocess.run(edm_se_cmd(*args(run), "resume=true"), capture_output=True, text=True, env=env,
                         timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = load_checkpoint(last), load_checkpoint(ref / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == steps
    for key in ("model", "ema"):
        for name, value in b[key].items():
            assert torch.equal(a[key][name], value), f"{key}.{name}"
    for name, value in b["paradigm"]["state"]["task"].items():  # the second model and its optimizer too
        assert torch.equal(a["paradigm"]["state"]["task"][name], value), f"task.{name}"
    assert a["paradigm"]["state"]["task_optimizer"]["state"].keys() == b["paradigm"]["state"]["task_optimizer"][
        "state"].keys()


@pytest.mark.parametrize("override, message", [
    (["paradigm.enhancer_output.mode=final"], "paradigm.enhancer_output.mode=final: must be one of"),
    (["paradigm.method=PCGRAD"], "paradigm.method=PCGRAD: must be one of CLSO, SRPR, GCLB, D4AM"),
    (["paradigm.task.name=wav2vec"], "paradigm.task.name=wav2vec: must be one of ctc, m5"),
    (["paradigm.loss_weight=-1"], "paradigm.loss_weight=-1: must be a number >= 0"),
    (["paradigm.task_grad_clip=0"], "paradigm.task_grad_clip=0: must be a number > 0"),
    (["+paradigm.task.norm=layer"], "paradigm.task.norm=layer: must be one of batch, instance"),
])
def test_bad_paradigm_values_are_one_line_config_errors(tmp_path, task_root, override, message):
    from edm_se import validate

    name = "d4am" if "method" in override[0] else "multi_task"
    with pytest.raises(validate.ConfigError, match="^" + message.replace("(", "\\(")):
        validate.train_config(_cfg(tmp_path, task_root, name, *override))


def test_a_task_paradigm_without_task_data_or_with_the_wrong_target_is_refused(tmp_path, task_root):
    from hydra import compose, initialize_config_dir

    from edm_se import validate
    from edm_se.cli import conf_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose(config_name="train", overrides=["paradigm=iterative"])  # data=builtin: no labels
    with pytest.raises(validate.ConfigError, match="paradigm=iterative: needs task data"):
        validate.train_config(cfg)
    with pytest.raises(validate.ConfigError, match="data.train.target=label: must be text"):
        validate.train_config(_cfg(tmp_path, task_root, "multi_task", "paradigm.task={name: ctc}",
                                   "~paradigm.task.num_classes"))
    validate.train_config(_cfg(tmp_path, task_root, "iterative"))  # a good one passes


def test_paradigms_study_trains_scores_caches_rescores_a_changed_checkpoint_and_refuses_a_changed_budget(
        tmp_path, task_root):
    from omegaconf import OmegaConf

    from edm_se.tasks.study import run_study

    cfg = OmegaConf.load(REPO / "conf" / "paradigms.yaml")
    cfg.pop("hydra")
    cfg.pop("defaults")
    cfg.out_dir, cfg.task_root, cfg.test_split = str(tmp_path / "study"), str(task_root), "valid"
    cfg.test_noise, cfg.snrs_db, cfg.peers, cfg.nfe_steps, cfg.threads = "builtin:test", [0, 20], [], [1], 1
    cfg.train_overrides = [*TINY_TRAIN, f"data.root={task_root}", "data.train.noise=builtin:train",
                           "data.valid.noise=builtin:valid", "trainer.max_steps=2"]
    cfg.tasks.keywords.overrides = ["data=keywords", "paradigm.task.channels=8"]
    cfg.tasks.keywords.cells, cfg.tasks.keywords.cell_overrides = ["baseline", "iterative"], {}
    cfg.tasks.sentences.overrides = [o for o in cfg.tasks.sentences.overrides
                                   if "max_steps" not in o and "high_snr" not in o]
    cfg.tasks.sentences.overrides += ["data.train.segment_seconds=4.08", "+paradigm.task.hidden=16"]
    cfg.tasks.sentences.cells, cfg.tasks.sentences.max_clips = ["baseline", "blackbox_iterative"], 3
    cfg.tasks.sentences.cell_overrides = {"baseline": ["trainer.max_steps=3"]}
    cfg.cells.iterative.enhancer_checkpoint = False
    cfg.cells.blackbox_iterative.enhancer_checkpoint = False
    first = run_study(cfg)
    # held out: valid voices x builtin test noise, against the tasks' train clips x builtin train noise + the enhancer's
    for task in ("keywords", "sentences"):
        assert first["tests"][task]["held_out"].startswith("held out: no audio of the"), first["tests"][task]
        assert json.loads((Path(cfg.out_dir) / task / "held_out.json").read_text())["status"] == "held out"
    assert "Held-out check: held out" in (Path(cfg.out_dir) / "results.md").read_text()
    rows = {(r["task"], r["row"], r["metric"]): r for r in first["rows"]}
    kw = {k[1]: r for k, r in rows.items() if k[0] == "keywords"}
    assert set(kw) == {"baseline", "iterative", "clean reference"}
    assert kw["iterative"]["front_end"] == "diffusion" and kw["baseline"]["front_end"] == "none"
    for r in kw.values():
        assert r["overall"]["n"] == 60 and set(r["per_snr"]) == {"0", "20"}  # 30 clips x 2 SNRs
        assert 0 <= r["overall"]["mean"] <= 100 and r["metric"] == "accuracy"
        assert r["provenance"]["test_sha256"] == first["tests"]["keywords"]["test_sha256"]
    # sentences: the CTC model's WER and Whisper's on the same inputs, 3 clips per SNR
    sent = {k[1:]: r for k, r in rows.items() if k[0] == "sentences"}
    assert set(sent) == {(row, m) for row in ("baseline", "blackbox_iterative", "clean reference")
                         for m in ("wer", "wer_whisper")}
    for r in sent.values():
        assert r["overall"]["n"] == 6 and r["overall"]["mean"] >= 0
    assert sent[("clean reference", "wer_whisper")]["overall"]["mean"] < 50  # Whisper reads clean flite speech
    assert sent[("baseline", "wer")]["overall"]["mean"] > 50  # a CTC model after 3 steps cannot
    out = Path(cfg.out_dir)
    base = load_checkpoint(out / "sentences" / "cells" / "baseline" / "checkpoints" / "last.pt")
    bb = load_checkpoint(out / "sentences" / "cells" / "blackbox_iterative" / "checkpoints" / "last.pt")
    assert int(base["step"]) == 3 and int(bb["step"]) == 2  # cell_overrides reach one cell only
    assert len(bb["paradigm"]["state"]["wer_cache"]) == 4  # Whisper's WER of 2 x 2 training examples
    # the checkpoint it started from is recorded by content: a study moved elsewhere resumes, another file does not
    assert bb["info"]["input_checkpoints"] == {"paradigm.task_checkpoint": file_sha256(
        out / "sentences" / "cells" / "baseline" / "checkpoints" / "last.pt")}
    for t, k in bb["paradigm"]["state"]["task"].items():  # its frozen task model is the baseline's
        assert torch.equal(k, base["paradigm"]["state"]["task"][t]), t
    for name in ("results.csv", "results.md", "summary.json", "keywords_accuracy_vs_snr.png",
                 "sentences_wer_whisper_vs_snr.png", "keywords_vs_nfe.png"):
        assert (out / name).stat().st_size > 0, name
    # a second run trains nothing and re-uses every score; a retrained checkpoint is scored again
    eval_json = out / "keywords" / "cells" / "iterative" / "eval.json"
    stamp = eval_json.stat().st_mtime_ns
    run_study(cfg)
    assert eval_json.stat().st_mtime_ns == stamp
    from edm_se.checkpoint import atomic_torch_save

    last = out / "keywords" / "cells" / "iterative" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    first_key = next(iter(ckpt["paradigm"]["state"]["task"]))
    ckpt["paradigm"]["state"]["task"][first_key] += 0.5  # same path and step, other content
    atomic_torch_save(ckpt, last)
    run_study(cfg)
    assert eval_json.stat().st_mtime_ns != stamp
    cfg.train_overrides = [*cfg.train_overrides[:-1], "trainer.max_steps=3"]
    with pytest.raises(Exception, match="changed: trainer.max_steps"):  # the trainer refuses a changed config
        run_study(cfg)
    # a finished cell is not reused under another training config either (it would be scored as if trained so)
    cfg.train_overrides = [*cfg.train_overrides[:-1], "trainer.max_steps=2", "trainer.optimizer.lr=1e-5"]
    with pytest.raises(CheckpointError, match=r"keywords/cells/baseline/checkpoints/last\.pt: was trained with "
                                              r"another config \(changed: trainer\.optimizer\.lr\)"):
        run_study(cfg)


def test_paradigms_study_task_sources_are_cells_of_the_same_task():
    """D4AM's frozen task model is the task's baseline cell (whatever its name); task_init starts the joint cells;
    a D4AM cell without a baseline cell in its task is a one-line config error."""
    from omegaconf import OmegaConf

    from edm_se import validate
    from edm_se.tasks.study import _task_source

    cfg = OmegaConf.load(REPO / "conf" / "paradigms.yaml")
    cfg.cells.clean_m5 = {"paradigm": "baseline"}
    tcfg = OmegaConf.create({"cells": ["clean_m5", "d4am", "iterative", "cold_cascade"], "task_init": "clean_m5"})
    assert [_task_source(n, cfg, tcfg) for n in tcfg.cells] == [None, "clean_m5", "clean_m5", None]
    with pytest.raises(validate.ConfigError, match="cell d4am .paradigm=d4am. needs a baseline cell"):
        _task_source("d4am", cfg, OmegaConf.create({"cells": ["d4am"]}))


def test_paradigms_study_trains_every_cell_again_per_extra_seed_and_reports_the_spread(tmp_path, task_root):
    """seeds=[1]: the cells train again with seed 1 in <task>/seed1/ (other weights), score on the same test set,
    and the seed table's mean and t-interval are those of the two seeds' all-SNR values."""
    from omegaconf import OmegaConf

    from edm_se.metrics import mean_ci95
    from edm_se.tasks.study import run_study

    cfg = OmegaConf.load(REPO / "conf" / "paradigms.yaml")
    cfg.pop("hydra")
    cfg.pop("defaults")
    cfg.out_dir, cfg.task_root, cfg.test_split = str(tmp_path / "study"), str(task_root), "valid"
    cfg.test_noise, cfg.snrs_db, cfg.peers, cfg.threads, cfg.nfe_curve = "builtin:test", [0, 20], [], 1, False
    cfg.train_overrides = [*TINY_TRAIN, f"data.root={task_root}", "data.train.noise=builtin:train",
                           "data.valid.noise=builtin:valid", "trainer.max_steps=30"]
    cfg.tasks.keywords.overrides = ["data=keywords", "paradigm.task.channels=8"]
    cfg.tasks.keywords.cells, cfg.tasks.keywords.cell_overrides = ["baseline"], {}
    cfg.tasks.pop("sentences")
    cfg.tasks.keywords.seeds = [0, 1]  # a task's own seeds; seed 0 is the study's seed: trained once
    summary = run_study(cfg)
    out = Path(cfg.out_dir) / "keywords"
    a = load_checkpoint(out / "cells" / "baseline" / "checkpoints" / "last.pt")
    b = load_checkpoint(out / "seed1" / "cells" / "baseline" / "checkpoints" / "last.pt")
    assert not (out / "seed0").exists()
    assert any(not torch.equal(v, b["paradigm"]["state"]["task"][k]) for k, v in a["paradigm"]["state"]["task"].items())
    table = {(t["row"], t["metric"]): t for t in summary["seeds"]}
    assert set(table) == {("baseline", "accuracy"), ("clean reference", "accuracy")}
    own = {r["row"]: r["overall"]["mean"] for r in summary["rows"]}
    seed1 = json.loads((out / "seed1" / "cells" / "baseline" / "eval.json").read_text())
    assert seed1["key"]["test_sha256"] == summary["tests"]["keywords"]["test_sha256"]
    t = table[("baseline", "accuracy")]
    assert t["per_seed"] == {"0": own["baseline"], "1": seed1["result"]["overall"]["mean"]}
    assert (t["mean"], t["ci95"], t["n"]) == tuple(mean_ci95(t["per_seed"].values()).values())
    md = (Path(cfg.out_dir) / "results.md").read_text()
    assert "per training seed" in md and "| seed 0 | seed 1 |" in md
    assert (Path(cfg.out_dir) / "seeds.csv").read_text().count("\n") == 1 + 2 * 2
    # paired against the baseline, mixture by mixture: per seed it is the difference of the two accuracies
    (pair,) = summary["paired"]  # the study has no cold_cascade cell: that comparison is skipped
    assert (pair["row"], pair["against"], pair["metric"]) == ("clean reference", "baseline", "accuracy")
    diffs = [table[("clean reference", "accuracy")]["per_seed"][k] - t["per_seed"][k] for k in ("0", "1")]
    assert [pair["per_seed"][k]["mean"] for k in ("0", "1")] == pytest.approx(diffs, abs=1e-9)
    assert pair["per_seed"]["1"]["n"] == 60 and pair["mean"] == pytest.approx(sum(diffs) / 2, abs=1e-9)
    assert "paired difference against baseline" in md and "| row - baseline | seed 0 | seed 1 | over seeds |" in md
    assert (Path(cfg.out_dir) / "paired.csv").read_text().count("\n") == 1 + 3  # seeds 0, 1 and all
    for ext in ("png", "pdf"):
        assert (Path(cfg.out_dir) / f"keywords_accuracy_minus_baseline.{ext}").stat().st_size > 0


def test_the_launcher_starts_a_cell_after_the_one_it_starts_from_and_a_needed_cell_first():
    from edm_se.tasks.launcher import CellJob, next_job

    jobs = [CellJob("kw", k, c, f"out{k}", None if c in ("baseline", "da") else "baseline")
            for k in (0, 1) for c in ("baseline", "da", "mt", "d4am")]
    keys = {(j.task, j.seed, j.cell) for j in jobs}
    waiting, done, order = list(jobs), set(), []
    while waiting:  # one worker: each job finishes before the next starts
        job = next_job(waiting, done, keys)
        waiting.remove(job)
        done.add((job.task, job.seed, job.cell))
        order.append((job.seed, job.cell))
    # seed 1's baseline (needed by two cells) before seed 0's joint cells and any cell nothing waits for
    assert order == [(0, "baseline"), (1, "baseline"), (0, "da"), (0, "mt"), (0, "d4am"), (1, "da"), (1, "mt"),
                     (1, "d4am")]
    only_joint = [j for j in jobs if j.cell in ("mt", "d4am")]
    assert next_job(only_joint, set(), keys) is None  # their baselines are jobs, not yet trained
    assert next_job(only_joint, set(), {(j.task, j.seed, j.cell) for j in only_joint}) == only_joint[0]  # trained before


def test_paradigms_study_with_workers_trains_the_cells_of_every_seed_side_by_side_as_one_process_does(
        tmp_path, task_root, monkeypatch):
    """workers=2: the cells of both seeds train in two spawned processes (one thread each), the iterative cell
    after the baseline it starts from; every checkpoint equals the one-process study's with threads=1, bit for bit,
    and so do the scores. A failing cell stops the study with its own error."""
    from omegaconf import OmegaConf

    from edm_se import validate
    from edm_se.tasks.launcher import cell_jobs, worker_threads
    from edm_se.tasks.study import run_study

    def cfg_for(name: str, **kw):
        cfg = OmegaConf.load(REPO / "conf" / "paradigms.yaml")
        cfg.pop("hydra")
        cfg.pop("defaults")
        cfg.out_dir, cfg.task_root, cfg.test_split = str(tmp_path / name), str(task_root), "valid"
        cfg.test_noise, cfg.snrs_db, cfg.peers, cfg.nfe_curve = "builtin:test", [0, 20], [], False
        cfg.train_overrides = [*TINY_TRAIN, f"data.root={task_root}", "data.train.noise=builtin:train",
                               "data.valid.noise=builtin:valid", "trainer.max_steps=4"]
        cfg.tasks.keywords.overrides = ["data=keywords", "paradigm.task.channels=8"]
        cfg.tasks.keywords.cells, cfg.tasks.keywords.cell_overrides = ["iterative", "baseline"], {}
        cfg.tasks.keywords.max_clips = 3
        cfg.tasks.pop("sentences")
        cfg.cells.iterative.enhancer_checkpoint = False
        cfg.seeds = [1]
        for k, v in kw.items():
            cfg[k] = v
        return cfg

    par_cfg = cfg_for("par", threads=2, workers=2)
    jobs = cell_jobs(par_cfg, {"keywords": par_cfg.tasks.keywords}, {"keywords": [1]})
    assert [(j.seed, j.cell, j.after) for j in jobs] == [(0, "baseline", None), (0, "iterative", "baseline"),
                                                         (1, "baseline", None), (1, "iterative", "baseline")]
    assert jobs[2].out == str(tmp_path / "par" / "keywords" / "seed1")
    assert (worker_threads(2, 2), worker_threads(3, 2), worker_threads(1, 4)) == (1, 1, 1)
    seq = run_study(cfg_for("seq", threads=1, workers=1))
    par = run_study(par_cfg)
    for sub in ("", "seed1/"):
        for cell in ("baseline", "iterative"):
            a = load_checkpoint(tmp_path / "seq" / "keywords" / f"{sub}cells" / cell / "checkpoints" / "last.pt")
            b = load_checkpoint(tmp_path / "par" / "keywords" / f"{sub}cells" / cell / "checkpoints" / "last.pt")
            assert int(b["step"]) == 4 and b["train_config"]["trainer"]["threads"] == 1
            for part in ("model", "ema"):
                assert a[part].keys() == b[part].keys()
                assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), (sub, cell, part)
            for k, v in a["paradigm"]["state"]["task"].items():
                assert torch.equal(v, b["paradigm"]["state"]["task"][k]), (sub, cell, k)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("provenance", "seconds")} for r in rows]
    assert strip(par["rows"]) == strip(seq["rows"]) and par["seeds"] == seq["seeds"]
    import edm_se.metrics

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool started although every cell is trained")

    monkeypatch.setattr(edm_se.metrics, "spawn_pool", no_pool)  # every cell trained: found here, no worker started
    assert strip(run_study(par_cfg)["rows"]) == strip(par["rows"])
    monkeypatch.undo()
    bad = cfg_for("bad", threads=2, workers=2)
    bad.tasks.keywords.cell_overrides = {"baseline": ["trainer.max_steps=0"]}
    with pytest.raises(validate.ConfigError, match=r"^trainer\.max_steps=0: must be"):
        run_study(bad)  # raised in a worker, pickled back
    assert not (tmp_path / "bad" / "keywords" / "cells" / "iterative" / "checkpoints").exists()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
@pytest.mark.parametrize("paradigm, port", [("iterative", 29531), ("d4am", 29532)])
def test_two_process_task_paradigm_keeps_both_models_identical(tmp_path, task_root, paradigm, port):
    """Two processes see different examples; the enhancer, the task model and its batch-norm statistics stay the
    same in both (the checksum covers all of them), so the gradients and buffers were averaged."""
    import json

    run = tmp_path / paradigm
    res = run_two_processes(port, run, "trainer.max_steps=3", *TINY_TRAIN, "data=keywords", f"data.root={task_root}",
                            "data.train.noise=builtin:train", "data.valid.noise=builtin:valid",
                            f"paradigm={paradigm}", "paradigm.task.channels=8", "device=cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    check = json.loads((run / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"], check
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2 and "task" in ckpt["paradigm"]["state"]


def _task_transfer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("task_transfer", REPO / "benchmarks" / "task_transfer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Oracle(torch.nn.Module):
    """A stand-in task model that knows every clip's answer (by the waveform's bytes) and garbles one voice's."""

    def __init__(self, kind: str, answers: dict[bytes, object]):
        super().__init__()
        self.kind, self.answers = kind, answers

    def forward(self, x):
        return x

    def predict(self, x):
        return [self.answers[row.numpy().tobytes()] for row in x]

    def metric(self, predictions, target):  # the CTC model's own WER/CER
        return CTCRecognizer.metric(self, predictions, target)


def test_task_transfer_scores_known_answers_per_voice_and_reads_both_kinds_of_checkpoint(tmp_path, task_root):
    """Keyword accuracy and CTC WER/CER per split and voice on the clean clips: an oracle that answers the training
    voice right and the validation voice wrong (keywords: label + 1; sentences: the first word dropped) scores
    100% / 0% accuracy and 0% / (one word per clip) WER; the CLI reads an M5 and a CTC checkpoint and writes the
    same structure; the enhancer's checkpoint loader refuses a task checkpoint."""
    import jiwer
    import soundfile as sf

    from edm_se.asr import normalise_text
    from edm_se.tasks.checkpoint import save_task_model
    from edm_se.tasks.data import read_task_manifest

    tt = _task_transfer()
    for kind, name in (("keyword", "keywords"), ("asr", "sentences")):
        manifest = task_root / name / "manifest.csv"
        rows = read_task_manifest(manifest)
        answers, refs, hyps, drop = {}, [], [], 0
        for r in rows:
            wave = sf.read(str(manifest.parent / r["path"]), dtype="float32")[0]
            right = r["voice"] == "kal16"
            if kind == "keyword":
                answers[wave.tobytes()] = r["label"] if right else (r["label"] + 1) % 10
            else:
                words = normalise_text(r["text"]).split()
                answers[wave.tobytes()] = " ".join(words if right else words[1:])
                if not right:
                    refs.append(" ".join(words))
                    hyps.append(" ".join(words[1:]))
                    drop += 1
        splits = tt.score_voices(_Oracle(kind, answers), manifest, every=2)
        assert splits["train"]["kal16"]["n"] == len(read_task_manifest(manifest, "train")[::2])  # every 2nd
        assert splits["valid"]["rms"]["n"] == len(read_task_manifest(manifest, "valid"))  # all of them
        assert "test" not in splits  # the fixture has no test voice
        if kind == "keyword":
            assert splits["train"]["kal16"]["mean"] == 100.0 and splits["valid"]["rms"]["mean"] == 0.0
        else:
            assert splits["train"]["kal16"]["mean"] == 0.0 and splits["train"]["kal16"]["cer"] == 0.0
            want = 100.0 * drop / sum(len(t.split()) for t in refs)  # one deletion per clip
            assert splits["valid"]["rms"]["mean"] == pytest.approx(want)
            assert splits["valid"]["rms"]["cer"] == pytest.approx(100.0 * jiwer.cer(refs, hyps))
            assert splits["valid"]["rms"]["cer"] > 0
    # the CLI: the checkpoint's kind picks the manifest; --json holds the splits
    torch.manual_seed(0)
    for model, metric in ((M5(10, channels=8), "accuracy"), (CTCRecognizer(channels=16, hidden=16, layers=1), "wer")):
        ckpt = save_task_model(model, tmp_path / f"{metric}.pt")
        out = tmp_path / f"{metric}.json"
        assert tt.main(["--ckpt", str(ckpt), "--task-root", str(task_root), "--max-per-voice", "3",
                        "--json", str(out)]) == 0
        res = json.loads(out.read_text())
        assert res["metric"] == metric and set(res["splits"]) == {"train", "valid"}
        assert res["splits"]["valid"]["rms"]["n"] == 3 and res["splits"]["valid"]["all"]["n"] == 3
        assert ("cer" in res["splits"]["valid"]["rms"]) == (metric == "wer")
    # a task checkpoint is not an enhancer's: refused with a one-line error where an enhancer is loaded
    from edm_se.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="is a task model's checkpoint"):
        load_checkpoint(ckpt)


def test_paradigms_report_names_runaway_transcripts_of_wer_rows_only():
    """A looping hypothesis in a WER row is named with its file and SNR; keyword rows and clean rows add nothing."""
    from edm_se.tasks.report import markdown

    def row(task, name, metric, per_file):
        return {"task": task, "row": name, "metric": metric, "front_end": "-", "task_model": "-",
                "per_snr": {"0": {"mean": 1.0, "ci95": 0.1, "n": 2}}, "overall": {"mean": 1.0, "ci95": 0.1, "n": 2},
                "per_file": per_file}

    wer_files = [{"name": "slt/a#0", "snr_db": 0.0, "prediction": "day " * 40, "words": 4},
                 {"name": "slt/b#1", "snr_db": 5.0, "prediction": "one two", "words": 2}]
    rows = [row("sentences", "iterative", "wer_whisper", wer_files),
            row("sentences", "baseline", "wer", [{**f, "prediction": "one"} for f in wer_files]),
            row("keywords", "baseline", "accuracy", [{"name": "k", "snr_db": 0.0, "prediction": 3, "target": 3}])]
    shas = {t: {"test_sha256": "0" * 64, "n_test": 2} for t in ("sentences", "keywords")}
    text = markdown(rows, {}, shas)
    section = text.split("## Runaway transcripts", 1)[1].strip().splitlines()
    assert section[1] == "- sentences, iterative, wer_whisper: `slt/a#0 at 0 dB` (40 words for 4)"
    assert len([line for line in section if line.startswith("- ")]) == 1
    assert "Runaway" not in markdown(rows[1:], {}, shas)


def test_paradigms_study_refuses_test_mixtures_with_training_noise_before_any_cell_trains(tmp_path, task_root):
    """The test noise drawn from the training noise (builtin:train, as the cells' data.train.noise): refused on
    content before a cell trains; heldout_check=warn would score it, marked."""
    from omegaconf import OmegaConf

    from edm_se.heldout import HeldOutError
    from edm_se.tasks.study import run_study

    cfg = OmegaConf.load(REPO / "conf" / "paradigms.yaml")
    cfg.pop("hydra")
    cfg.pop("defaults")
    cfg.out_dir, cfg.task_root, cfg.test_split = str(tmp_path / "study"), str(task_root), "valid"
    cfg.test_noise, cfg.snrs_db, cfg.peers, cfg.threads, cfg.nfe_curve = "builtin:train", [5], [], 1, False
    cfg.train_overrides = [*TINY_TRAIN, f"data.root={task_root}", "data.train.noise=builtin:train",
                           "data.valid.noise=builtin:valid", "trainer.max_steps=2"]
    cfg.tasks.keywords.overrides = ["data=keywords", "paradigm.task.channels=8"]
    cfg.tasks.keywords.cells, cfg.tasks.keywords.cell_overrides = ["baseline"], {}
    cfg.tasks.pop("sentences")
    with pytest.raises(HeldOutError, match=r"^tasks\.keywords=keywords test mixtures: \d+ of 30 test mixtures share "
                                           r"audio .*noise of"):
        run_study(cfg)
    out = Path(cfg.out_dir) / "keywords"
    assert not (out / "cells").exists()  # nothing trained
    report = json.loads((out / "held_out.json").read_text())
    assert report["status"] == "overlap" and {m["kind"] for m in report["matches"]} == {"noise"}


def test_paired_differences_are_the_rows_differences_with_the_paired_t_interval():
    """Accuracy and WER rows paired mixture by mixture: the mean is the difference of the two rows' scores (corpus
    WER for WER), the interval scipy's paired t-test's; over seeds, the t-interval of the seeds' differences."""
    from scipy import stats

    from edm_se.metrics import mean_ci95
    from edm_se.tasks.paired import paired_markdown, paired_table

    rng = np.random.default_rng(0)
    names = [(f"clip{i}", snr) for i in range(40) for snr in (0.0, 20.0)]
    words = rng.integers(3, 12, len(names))

    def acc_row(row, seed, p):
        correct = rng.random(len(names)) < p
        return {"task": "kw", "row": row, "metric": "accuracy", "seed": seed,
                "per_file": [{"name": n, "snr_db": s, "correct": int(c)} for (n, s), c in zip(names, correct)]}

    def wer_row(row, rate):
        errors = rng.binomial(words, rate)
        return {"task": "sent", "row": row, "metric": "wer_whisper", "per_file": [
            {"name": n, "snr_db": s, "errors": int(e), "words": int(w), "target": "", "prediction": ""}
            for (n, s), e, w in zip(names, errors, words)]}

    rows = [acc_row(r, k, p) for k in (0, 1, 2) for r, p in (("baseline", 0.4), ("d4am", 0.55))]
    rows += [wer_row("baseline", 0.3), wer_row("d4am", 0.2), {"task": "sent", "row": "peer", "metric": "wer_whisper"}]
    table = {(t["task"], t["row"], t["against"]): t for t in paired_table(rows, ["baseline"])}
    assert set(table) == {("kw", "d4am", "baseline"), ("sent", "d4am", "baseline")}  # no per-file scores: left out
    kw = table[("kw", "d4am", "baseline")]
    for k in (0, 1, 2):
        a, b = ([f["correct"] for f in rows[i]["per_file"]] for i in (2 * k + 1, 2 * k))  # d4am, baseline
        test = stats.ttest_rel(np.array(a) * 100.0, np.array(b) * 100.0)
        lo, hi = test.confidence_interval(0.95)
        got = kw["per_seed"][str(k)]
        assert got["mean"] == pytest.approx(100.0 * (np.mean(a) - np.mean(b)), abs=1e-9)
        assert (got["mean"] - got["ci95"], got["mean"] + got["ci95"]) == pytest.approx((lo, hi), abs=1e-9)
        assert got["n"] == len(names)
    over = mean_ci95([kw["per_seed"][k]["mean"] for k in ("0", "1", "2")])
    assert (kw["mean"], kw["ci95"], kw["n"]) == (over["mean"], over["ci95"], 3)
    sent = table[("sent", "d4am", "baseline")]["per_seed"]["0"]
    corpus = [100.0 * sum(f["errors"] for f in r["per_file"]) / sum(f["words"] for f in r["per_file"])
              for r in rows[6:8]]  # corpus WER: all errors over all reference words (the study's overall WER)
    assert sent["mean"] == pytest.approx(corpus[1] - corpus[0], abs=1e-9)  # the difference of the corpus WERs
    md = paired_markdown(list(table.values()))
    assert "| row - baseline | seed 0 | seed 1 | seed 2 | over seeds |" in md and "(n=3)" in md
    other = acc_row("d4am", 0, 0.5)
    other["per_file"] = other["per_file"][:-1]
    with pytest.raises(ValueError, match=r"kw: rows 'd4am' and 'baseline' \(accuracy\) scored other test mixtures"):
        paired_table([rows[0], other], ["baseline"])
