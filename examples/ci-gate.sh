#!/usr/bin/env bash
# CI gate for a network spec: nncli's checks in order, stopping at the first one that fails.
#
#   examples/ci-gate.sh SPEC [--max-params 1M] [--max-flops 1G] [--max-memory 2GiB] [--seeds 0,1,2]
#
# Steps (each prints its own report; a summary comes last):
#   1. check --strict  the spec is valid and has no lint warning
#   2. params          the size stays within budget (default: --max-params 1M)
#   3. gradcheck       every layer's gradients agree with finite differences
#   4. probe           no vanishing or exploding gradients at initialisation
# Exit status: that of the first failing step (1: a check found a problem, 2: bad input such as
# a missing or broken spec); 0 when every step passed. Each step's output is also kept in
# $GATE_REPORTS (default: a new temporary folder) for a CI job to upload.
# Copy it into your CI; set NNCLI="python -m nncli" where the console script is not on PATH.

set -uo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || usage
spec=$1; shift
budget=()
seeds=0,1,2
while [[ $# -gt 0 ]]; do
    case $1 in
        --max-params|--max-flops|--max-memory) [[ $# -ge 2 ]] || usage; budget+=("$1" "$2"); shift 2 ;;
        --seeds) [[ $# -ge 2 ]] || usage; seeds=$2; shift 2 ;;
        *) echo "ci-gate: unknown option $1" >&2; usage ;;
    esac
done
[[ ${#budget[@]} -gt 0 ]] || budget=(--max-params 1M)

read -r -a nncli <<< "${NNCLI:-nncli}"
if ! command -v "${nncli[0]}" >/dev/null 2>&1; then  # say so, rather than 127 at the first step
    echo "${nncli[0]}: command not found; activate nncli's venv (. .venv/bin/activate) or set NNCLI=\"/path/to/.venv/bin/nncli\"" >&2
    exit 2
fi
reports=${GATE_REPORTS:-$(mktemp -d "${TMPDIR:-/tmp}/nncli-gate.XXXXXX")}
mkdir -p "$reports"

meaning() {
    case $1 in
        0) echo "ok" ;;
        1) echo "FAILED  exit 1: the check found a problem" ;;
        2) echo "FAILED  exit 2: bad input (a missing or invalid spec, a bad flag)" ;;
        3) echo "FAILED  exit 3: nncli itself crashed (a bug: rerun with --traceback and report it)" ;;
        130) echo "interrupted (exit 130)" ;;
        *) echo "FAILED  exit $1" ;;
    esac
}

names=() results=() failed=0
# step NAME LOG ARGS...: run `nncli ARGS...` unless an earlier step failed; its output goes to
# the terminal and to $reports/LOG.txt
step() {
    local name=$1 log=$2; shift 2
    names+=("$name")
    if [[ $failed -ne 0 ]]; then results+=("skipped (an earlier step failed)"); return; fi
    printf '\n== %s: nncli %s\n' "$name" "$*"
    local start code
    start=$(date +%s.%N)
    "${nncli[@]}" "$@" 2>&1 | tee "$reports/$log.txt"
    code=${PIPESTATUS[0]}
    results+=("$(meaning "$code") $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "(%.1f s)", b - a }')")
    [[ $code -eq 0 ]] || failed=$code
}

step "check --strict" check check "$spec" --strict
step "params ${budget[*]}" params params "$spec" "${budget[@]}"
step "gradcheck" gradcheck gradcheck "$spec" --device cpu
step "probe --seeds $seeds" probe probe "$spec" --seeds "$seeds" --device cpu

printf '\nnncli CI gate: %s\n' "$spec"
for i in "${!names[@]}"; do
    printf '  %d. %-28s %s\n' "$((i + 1))" "${names[$i]}" "${results[$i]}"
done
echo "  step outputs: $reports"
if [[ $failed -ne 0 ]]; then
    echo "gate FAILED (exit $failed): fix the first failing step above"
else
    echo "gate passed"
fi
exit "$failed"
