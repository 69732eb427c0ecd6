#!/usr/bin/env bash
# A from-scratch tour of nncli on the data it ships with (nothing is downloaded):
# check, count and draw a network, train it, then let a sweep choose an architecture by
# validation accuracy and compare the winner with the first run.
#
#   examples/tour.sh [OUT_DIR]        # default OUT_DIR: a new temporary folder
#   QUICK=1 examples/tour.sh          # fewer epochs and trials: about a minute on 2 CPU cores
#
# Every command is printed before it runs; the tour stops at the first one that fails.
# Set NNCLI="python -m nncli" where the console script is not on PATH.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/nncli-tour.XXXXXX")}
mkdir -p "$out"
read -r -a nncli <<< "${NNCLI:-nncli}"
if ! command -v "${nncli[0]}" >/dev/null 2>&1; then  # say so, rather than 127 at the first step
    echo "${nncli[0]}: command not found; activate nncli's venv (. .venv/bin/activate) or set NNCLI=\"/path/to/.venv/bin/nncli\"" >&2
    exit 2
fi
python=${PYTHON:-python3}
cd "$root"

run() {
    printf '\n$ nncli %s\n' "$*"
    "${nncli[@]}" "$@"
}

if [[ ${QUICK:-0} == 1 ]]; then
    epochs=5; sweep_flags=(--trials 3 --set train.epochs=5 --set data.n=400)
else
    epochs=30; sweep_flags=()
fi

echo "# 1. The lecture's network: 2 inputs -> 3 -> 4 -> 2, ReLU between. Is the spec sound?"
run check specs/lecture-mlp.yaml

echo "# 2. How big is it? 35 parameters, as counted by hand in the spec's comment."
run params specs/lecture-mlp.yaml

echo "# 3. Draw it: the layer view and the classical neuron picture."
if command -v dot > /dev/null; then ext=svg; else ext=dot; echo "(graphviz's dot is missing: writing DOT sources)"; fi
run diagram specs/lecture-mlp.yaml -o "$out/lecture-mlp.$ext"
run diagram specs/lecture-mlp.yaml --view neurons -o "$out/lecture-mlp-neurons.$ext"

echo "# 4. Train a wider MLP on two moons (seeded: the same command gives the same numbers)."
run train specs/moons-mlp.yaml --epochs "$epochs" --device cpu --out "$out/moons" --plot "$out/moons-curves.png"
run evaluate "$out/moons" --split test --device cpu

echo "# 5. Choose depth and activation by validation accuracy: a sweep of 9 configurations."
run sweep sweeps/moons-depth-activation.yaml --out "$out/sweep" --workers 2 --device cpu \
    --plot "$out/sweep.png" "${sweep_flags[@]}"

echo "# 6. The sweep's winner next to the first run: metrics, the settings that differ, curves."
best=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"]["run_dir"])' "$out/sweep/sweep.json")
run compare "$out/moons" "$best" --plot "$out/compare.png"

echo
echo "Tour done. Files in $out:"
echo "  lecture-mlp.$ext, lecture-mlp-neurons.$ext   diagrams"
echo "  moons/                                   a run folder (run.yaml, metrics, checkpoints, report.json)"
echo "  sweep/best.yaml                          the winning spec; sweep/sweep.json: every trial"
echo "  moons-curves.png, sweep.png, compare.png plots"
