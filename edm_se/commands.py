"""Thin Hydra tasks for ``edm-se evaluate``, ``edm-se heldout``, ``edm-se data build`` and ``edm-se data tasks`` (the
work lives in evaluate.py, heldout.py and data/)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def evaluate_main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se evaluate``: score estimates against references, print a table, write CSV/JSON."""
    from edm_se import validate
    from edm_se.evaluate import check_held_out, evaluate_dirs, format_summary

    validate.evaluate_config(cfg)
    output = Path(cfg.output) if cfg.output is not None else Path(cfg.estimates)
    metrics = tuple(OmegaConf.to_container(cfg.metrics)) if cfg.metrics is not None else None
    kwargs = {"metrics": metrics} if metrics else {}
    held_out = check_held_out(cfg.estimates, cfg.references, noisy=cfg.noisy, ckpt=cfg.get("ckpt"),
                              mode=str(cfg.get("heldout_check", "refuse")), progress=bool(cfg.progress))
    kwargs["held_out"] = held_out
    summary = evaluate_dirs(cfg.estimates, cfg.references, noisy=cfg.noisy, output_dir=output,
                            num_workers=int(cfg.num_workers), transcripts=cfg.get("transcripts"),
                            partial=bool(cfg.partial), progress=bool(cfg.progress),
                            max_length_mismatch=cfg.max_length_mismatch, **kwargs)
    print(format_summary(summary))
    print(f"wrote {output / 'metrics.csv'} and {output / 'summary.json'}")


def heldout_main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se heldout``: check a test set against a checkpoint's training data, print the report
    (and write it as JSON with ``output=``); exit 2 on shared audio unless ``heldout_check=warn``."""
    from edm_se import validate
    from edm_se.atomic import atomic_write_json
    from edm_se.heldout import check_test_set, enforce, write_held_out_subset
    from edm_se.model import default_checkpoint_path
    from edm_se.testset import load_test_set
    from edm_se.trained_on import TrainingData, checkpoint_training_data

    validate.heldout_config(cfg)
    test_set = load_test_set(cfg.test_set, cfg.max_files)
    test_set.check_audio()
    if cfg.get("train") is not None:  # training data itself, read as speech and as noise
        spec = OmegaConf.to_container(cfg.train) if OmegaConf.is_config(cfg.train) else cfg.train
        label = f"train={cfg.train}"
        data = TrainingData(label, [("speech", spec, label), ("noise", spec, label)])
        ckpt = None
    else:
        ckpt = Path(str(cfg.ckpt)).expanduser() if cfg.ckpt is not None else default_checkpoint_path()
        data = checkpoint_training_data(ckpt)
    report = check_test_set(test_set, data, progress=bool(cfg.progress))
    for t in report.training:
        print(f"training {t['kind']:<6} {t.get('resolved', t['spec'])}: "
              + (f"{t['files']} files" if t["files"] is not None else "not found")
              + (f" (those listed in {t['listed_in']})" if t.get("listed_in") else ""))
    for m in report.matches[:20]:
        print(f"shared: {m['test']} ({m['test_start_s']:.2f} s) = {m['train']} ({m['train_start_s']:.2f} s), "
              f"{m['seconds']:.1f} s, bit error rate {m['ber']:.3f}")
    if len(report.matches) > 20:
        print(f"... and {len(report.matches) - 20} more shared pairs" + (" (all in the JSON report)"
                                                                          if cfg.output is not None else ""))
    if cfg.output is not None:
        atomic_write_json(Path(str(cfg.output)), {"format": "edm_se.heldout_report/1",
                                                  "checkpoint": str(ckpt) if ckpt is not None else None,
                                                  **report.as_dict()})
        print(f"wrote {cfg.output}")
    if cfg.get("held_out_subset") is not None:  # the held-out part is what was asked for: exit 0 once it is written
        print(write_held_out_subset(test_set, report, Path(str(cfg.held_out_subset)), ckpt))
        enforce(report, "warn")
        return
    enforce(report, str(cfg.heldout_check))  # logs the verdict (an error on shared audio with refuse)


def data_build_main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se data build``: build the larger real-audio corpus."""
    from edm_se import validate
    from edm_se.data.corpus import build_corpus

    validate.data_build_config(cfg)
    sources = tuple(OmegaConf.to_container(cfg.sources)) if cfg.sources is not None else None
    info = build_corpus(Path(cfg.out_dir), seed=int(cfg.seed), max_minutes=cfg.max_minutes, sources=sources)
    print(info if isinstance(info, str) else f"corpus ready in {cfg.out_dir}: {info}")


def data_tasks_main(cfg: DictConfig) -> None:
    """Hydra task of ``edm-se data tasks``: build the downstream task data (:mod:`edm_se.tasks.data`)."""
    from edm_se import validate
    from edm_se.tasks.data import build_task_corpus

    validate.data_tasks_config(cfg)
    voices = tuple(OmegaConf.to_container(cfg.voices)) if cfg.voices is not None else None
    tasks = tuple(OmegaConf.to_container(cfg.tasks)) if cfg.get("tasks") is not None else ("keywords", "sentences")
    out = build_task_corpus(Path(cfg.out_dir), voices=voices, max_sentences=cfg.max_sentences,
                            cache_dir=cfg.get("cache_dir"), tasks=tasks,
                            sentence_takes=int(cfg.get("sentence_takes") or 1))
    print(f"task data ready in {out}: {out / 'keywords' / 'manifest.csv'}, {out / 'sentences' / 'manifest.csv'}")
