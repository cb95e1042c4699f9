#!/usr/bin/env bash
# session 22: the keyword paradigms with the speed-perturbed M5 (task-only cells 3000 steps), seed 0
# (session 22 ran it from a snapshot worktree of 381bf28 via PYTHONPATH; this runs the installed edm-se)
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
.venv/bin/python -c "import sys; sys.argv=['edm-se','study','study=paradigms','out_dir=studies/runs/paradigms_kw_sp','~tasks.sentences',\"tasks.keywords.overrides=['data=keywords','data.train.snr_db=[0.0,25.0]','data.train.high_snr_fraction=0.0','+paradigm.task.norm=instance','trainer.max_steps=200','+data.train.speed_perturb=[0.85,1.15]']\",\"tasks.keywords.cell_overrides.baseline=['trainer.max_steps=3000']\",\"tasks.keywords.cell_overrides.data_augmentation=['trainer.max_steps=3000']\",\"tasks.keywords.cell_overrides.cold_cascade=['trainer.max_steps=3000']\",\"tasks.keywords.cell_overrides.cold_cascade_da=['trainer.max_steps=3000']\"]+sys.argv[1:]; import edm_se.cli; edm_se.cli.main()" "$@"
