#!/usr/bin/env bash
# session 22: does speed perturbation make the M5 transfer to the test voices? baseline cell of the keyword study,
# seeds 0-2, with and without data.train.speed_perturb (control: seed 0 without)
cd /work/main
run() {  # name, extra overrides...
  local name=$1; shift
  PYTHONPATH=/work/bg4 .venv/bin/python -P -c "import sys; sys.argv=['edm-se','train','+experiment=cpu_demo','data=keywords','data.train.snr_db=[0.0,25.0]','data.train.high_snr_fraction=0.0','paradigm=baseline','+paradigm.task.norm=instance','trainer.max_steps=1500','trainer.warmup_steps=50','trainer.val_every=0','trainer.ckpt_every=100','trainer.tensorboard=false','trainer.num_workers=0','trainer.threads=1','trainer.log_every=100','resume=true','run_dir=studies/runs/kw_speed/$name']+sys.argv[1:]; import edm_se.cli; edm_se.cli.main()" "$@"
  PYTHONPATH=/work/bg4 .venv/bin/python -P /work/bg4/benchmarks/task_transfer.py --ckpt studies/runs/kw_speed/$name/checkpoints/last.pt --json studies/runs/kw_speed/$name/transfer.json
}
run speed_s0 seed=0 '+data.train.speed_perturb=[0.85,1.15]'
run plain_s0 seed=0
run speed_s1 seed=1 '+data.train.speed_perturb=[0.85,1.15]'
run speed_s2 seed=2 '+data.train.speed_perturb=[0.85,1.15]'
