#!/usr/bin/env bash
# Transfer learning on the bundled 8x8 digits (nothing is downloaded): train a CNN on digits 0-4,
# then learn digits 5-9 from only N training images per class (N = 5, 10, 20, 50), three ways:
#   scratch    the same network, randomly initialised
#   frozen     the 0-4 network's trunk (layers 0..10, up to `trunk`) copied and frozen; only the
#              new head trains (the trunk is a fixed feature extractor, BatchNorm statistics kept)
#   finetuned  the trunk copied, then trained with the head
# each with several seeds (the seed drives the weights, the split and which N images are drawn).
# Prints a table of mean test accuracy per N and arm, and writes transfer-digits.png.
#
#   examples/transfer-digits.sh [OUT_DIR]     # default OUT_DIR: a new temporary folder
#   SEEDS="0 1 2" SIZES="5 10 20 50" examples/transfer-digits.sh runs/transfer
#
# Set NNCLI="python -m nncli" where the console script is not on PATH.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/nncli-transfer.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
read -r -a nncli <<< "${NNCLI:-nncli}"
python=${PYTHON:-python3}
seeds=${SEEDS:-0 1 2}
sizes=${SIZES:-5 10 20 50}
epochs=${EPOCHS:-50}
cd "$root"

run() {
    printf '$ nncli %s\n' "$*" >&2
    "${nncli[@]}" "$@"
}

if [[ ! -f "$out/source/report.json" ]]; then
    rm -rf "$out/source"
    run train specs/digits-0-4.yaml -o "$out/source" --json > "$out/source.json"
fi
for n in $sizes; do
    for seed in $seeds; do
        for arm in scratch frozen finetuned; do
            dir="$out/n$n-seed$seed-$arm"
            [[ -f "$dir/report.json" ]] && continue  # a rerun finishes what is missing
            rm -rf "$dir"
            case $arm in
                scratch) how=(--set transfer=null) ;;
                frozen) how=(--set "transfer.from=$out/source" --set transfer.freeze=true) ;;
                finetuned) how=(--set "transfer.from=$out/source" --set transfer.freeze=false) ;;
            esac
            run train specs/digits-5-9-transfer.yaml "${how[@]}" --set "data.per_class=$n" \
                --set "data.seed=$seed" --seed "$seed" --epochs "$epochs" -o "$dir" --json > "$dir.json"
        done
    done
done
"$python" examples/transfer_table.py "$out" --plot "$out/transfer-digits.png"
