#!/usr/bin/env bash
# controls for kw_speed.sh: seeds 1-2 without speed perturbation, same settings
cd /work/main
while pgrep -f kw_speed.sh >/dev/null; do sleep 10; done
source <(sed -n '/^run() {/,/^}/p' studies/runs/kw_speed.sh)
run plain_s1 seed=1
run plain_s2 seed=2
