#!/usr/bin/env bash
# seeds 3-4 of kw_speed.sh, with and without speed perturbation
cd /work/main
while pgrep -f "kw_speed2?.sh" >/dev/null; do sleep 10; done
source <(sed -n '/^run() {/,/^}/p' studies/runs/kw_speed.sh)
run speed_s3 seed=3 '+data.train.speed_perturb=[0.85,1.15]'
run plain_s3 seed=3
run speed_s4 seed=4 '+data.train.speed_perturb=[0.85,1.15]'
run plain_s4 seed=4
