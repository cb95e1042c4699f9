#!/usr/bin/env bash
# Wheels for benchmarks/gpu/run.sh, fetched HERE (a machine with PyPI) into .whl/ (git-ignored) for the lent GPU
# machine, which reaches no index. That machine's image has Python 3.12 with torch, torchaudio, numpy, scipy, tqdm,
# PyYAML, pytest and setuptools (the device tool's KINDS.md), but not the ones below. Versions: those of this
# checkout's .venv where it has them (what the tests ran with), else the newest.
#   bash benchmarks/gpu/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
ver() {  # NAME -> NAME==VERSION of .venv, or NAME
    local v=""
    [ -x .venv/bin/python ] && v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)
    if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi
}
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    plat+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl "$(ver hydra-core)" "$(ver omegaconf)" "$(ver soundfile)" "$(ver cffi)" "$(ver pycparser)" \
    "$(ver einops)" sgmse==0.1.2
# antlr4-python3-runtime 4.9.3 (omegaconf's pin) is published as a source archive only: build its pure wheel here
python3 -m pip wheel -q --no-deps -w .whl "$(ver antlr4-python3-runtime)"
ls -la .whl
du -sh .whl
