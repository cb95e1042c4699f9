#!/usr/bin/env bash
# session 26: the keyword paradigms with the conf/paradigms.yaml defaults of commit <see README> (speed-perturbed M5,
# 12000 task-only steps), one training seed per call, one thread per process so that two seeds train side by side
# on a 2-core machine. Usage: run.sh SEED [OVERRIDES...]. Seed 0 is the study's own seed (out_dir studies/runs/paradigms_kw12k);
# seed k > 0 trains in studies/runs/paradigms_kw12k_s<k>, whose keywords/ is a link to
# studies/runs/paradigms_kw12k/keywords/seed<k>/, exactly where `tasks.keywords.seeds=[1,2]` puts it, so the final
# call `run.sh all` (seeds 0-2, everything trained and scored already) only assembles the seed table.
# cold_cascade_da is left out (a diffusion pass on every training batch: about 6x the M5's step time, some 80 min
# a cell at 12000 steps on one core).
# Runs from the repository root with the installed edm-se, or with PYTHONPATH=<snapshot worktree> python -P.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
OUT=studies/runs/paradigms_kw12k
study() {
  .venv/bin/python -P -c "import sys; sys.argv=['edm-se','study','study=paradigms','~tasks.sentences','threads=1','tasks.keywords.cells=[baseline,data_augmentation,cold_cascade,multi_task,iterative,d4am]',\"train_overrides=['+experiment=cpu_demo','trainer.warmup_steps=50','trainer.val_every=0','trainer.ckpt_every=100','trainer.tensorboard=false','trainer.num_workers=0','trainer.threads=1','trainer.log_every=25']\"]+sys.argv[1:]; import edm_se.cli; edm_se.cli.main()" "$@"
}
K=$1; shift  # the rest: more overrides, e.g. a subset of the cells
case "$K" in
  0) study out_dir=$OUT "$@" ;;
  all) study out_dir=$OUT 'tasks.keywords.seeds=[1,2]' "$@" ;;
  *) mkdir -p "$OUT/keywords/seed$K" "${OUT}_s$K"
     [ -e "${OUT}_s$K/keywords" ] || ln -s "$(realpath "$OUT/keywords/seed$K")" "${OUT}_s$K/keywords"
     study out_dir=${OUT}_s$K seed=$K nfe_curve=false "$@" ;;
esac
