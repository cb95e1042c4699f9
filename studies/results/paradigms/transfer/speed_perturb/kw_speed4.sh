#!/usr/bin/env bash
# session 22: kw_speed.sh at 3000 steps (is the speed-perturbed M5 underfit at 1500?), seeds 0-4, with and without
cd /work/main
source <(sed -n '/^run() {/,/^}/p' studies/runs/kw_speed.sh)
for k in 0 1 2 3 4; do
  run speed3k_s$k seed=$k '+data.train.speed_perturb=[0.85,1.15]' trainer.max_steps=3000
  run plain3k_s$k seed=$k trainer.max_steps=3000
done
