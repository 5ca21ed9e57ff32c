#!/usr/bin/env bash
# The study on the full CIFAR-10 JPEGs: train the suite in reports/cifar10.toml (niced, resumable:
# rerun this script to continue where it stopped), then write reports/cifar10.md from its runs.
# Hours on 2 cores; the runs directory must outlive the checkout (default: outside it).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${ARCHBENCH_DATA:-$HOME/.cache/archbench/data}"
runs="${CIFAR10_RUNS:-$HOME/archbench-runs/suite-cifar10}"
shared="${SHARED_DATA:-../shared/data}"
if [ ! -d "$data/cifar10-jpg/test" ]; then
  mkdir -p "$data"
  tar -xzf "$shared/cifar10-jpg.tar.gz" -C "$data"
fi
status=0
nice -n 19 archbench suite --file reports/cifar10.toml --datasets "imagefolder:$data/cifar10-jpg" \
  --runs-dir "$runs" --quiet "$@" || status=$?
archbench report --runs-dir "$runs" --compare-study souza2020 --baseline squeezenet \
  --title "The study's five networks on CIFAR-10 (JPEGs)" --out reports/cifar10.md
exit "$status"
