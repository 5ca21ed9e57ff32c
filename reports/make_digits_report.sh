#!/usr/bin/env bash
# Regenerates reports/digits.md: the study's five networks trained with archbench's defaults on
# the embedded digits set (15 epochs at most, plateau schedule, selection on validation), each
# profiled on both CPU backends over the whole digits test set, then one report.
# Run from the repository root on an otherwise idle machine (latency is measured):
#     bash reports/make_digits_report.sh [--allow-dirty]
# A committed report must come from committed code: a checkout with modified tracked files is
# refused unless --allow-dirty (the report then lists the files that differed).
set -euo pipefail

allow_dirty=0
for arg in "$@"; do
    case "$arg" in
        --allow-dirty) allow_dirty=1 ;;
        *) echo "make_digits_report.sh: unknown option $arg (only --allow-dirty)" >&2; exit 2 ;;
    esac
done
if [ "$allow_dirty" = 0 ]; then
    repo="$(cd "$(dirname "$0")/.." && pwd)"
    changed="$(git -C "$repo" status --porcelain --untracked-files=no | cut -c4- | tr '\n' ' ')"
    if [ -n "$changed" ]; then
        echo "make_digits_report.sh: the checkout has uncommitted changes (${changed% }); commit or stash them, or pass --allow-dirty (the report then names them)" >&2
        exit 1
    fi
fi

runs="${RUNS_DIR:-runs/digits-example-$(date +%Y%m%d-%H%M%S)}"
for arch in squeezenet_dsc squeezenet mobilenet alexnet vgg19; do
    archbench run --arch "$arch" --dataset digits --runs-dir "$runs" --backends cpu --samples all
done
archbench report --runs-dir "$runs" --compare-study souza2020 --out reports/digits.md \
    --title "The study's five networks on the embedded digits set" \
    --note "budget: archbench's digits defaults (at most 15 epochs, Adam lr 0.01, batch 128, plateau schedule), one run per network, seed 0; latency over the 359 test images at batch 1 on CPU only (no GPU on this machine). Regenerate: bash reports/make_digits_report.sh"
