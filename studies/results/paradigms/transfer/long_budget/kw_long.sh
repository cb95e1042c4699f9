#!/usr/bin/env bash
# session 25: is the speed-perturbed M5 under-trained at 3000 steps? 12000 steps, seeds $@ (same recipe as kw_speed4.sh)
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the repository root (session 25 ran it from a
# snapshot worktree of f270dfe via PYTHONPATH; the installed edm-se of the same commit runs the same code)
run() {  # name, extra overrides...
  local name=$1; shift
  .venv/bin/python -c "import sys; sys.argv=['edm-se','train','+experiment=cpu_demo','data=keywords','data.train.snr_db=[0.0,25.0]','data.train.high_snr_fraction=0.0','paradigm=baseline','+paradigm.task.norm=instance','trainer.max_steps=12000','trainer.warmup_steps=50','trainer.val_every=0','trainer.ckpt_every=500','trainer.tensorboard=false','trainer.num_workers=0','trainer.threads=1','trainer.log_every=100','resume=true','run_dir=studies/runs/kw_long/$name']+sys.argv[1:]; import edm_se.cli; edm_se.cli.main()" "$@"
  .venv/bin/python benchmarks/task_transfer.py --ckpt studies/runs/kw_long/$name/checkpoints/last.pt --json studies/runs/kw_long/$name/transfer.json
}
for s in "$@"; do run speed12k_s$s seed=$s '+data.train.speed_perturb=[0.85,1.15]'; done
