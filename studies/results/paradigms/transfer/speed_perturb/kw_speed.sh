#!/usr/bin/env bash
# session 22: does speed perturbation make the M5 transfer to the test voices? The keyword study's baseline cell,
# seeds 0-4, with and without data.train.speed_perturb. Usage: kw_speed.sh [STEPS] (1500: runs speed_s<k> /
# plain_s<k>; 3000: speed3k_s<k> / plain3k_s<k>). Session 22 ran these runs from a snapshot worktree of 94780d7
# (in four scripts, since merged into this one); this runs from the repository root with the installed edm-se.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
STEPS=${1:-1500}
TAG=$([ "$STEPS" = 1500 ] && echo "" || echo "$((STEPS / 1000))k")
run() {  # name, extra overrides...
  local name=$1; shift
  .venv/bin/python -c "import sys; sys.argv=['edm-se','train','+experiment=cpu_demo','data=keywords','data.train.snr_db=[0.0,25.0]','data.train.high_snr_fraction=0.0','paradigm=baseline','+paradigm.task.norm=instance','trainer.max_steps=$STEPS','trainer.warmup_steps=50','trainer.val_every=0','trainer.ckpt_every=100','trainer.tensorboard=false','trainer.num_workers=0','trainer.threads=1','trainer.log_every=100','resume=true','run_dir=studies/runs/kw_speed/$name']+sys.argv[1:]; import edm_se.cli; edm_se.cli.main()" "$@"
  .venv/bin/python benchmarks/task_transfer.py --ckpt studies/runs/kw_speed/$name/checkpoints/last.pt --json studies/runs/kw_speed/$name/transfer.json
}
for k in 0 1 2 3 4; do
  run speed${TAG}_s$k seed=$k '+data.train.speed_perturb=[0.85,1.15]'
  run plain${TAG}_s$k seed=$k
done
