#!/usr/bin/env bash
# The study on the full CIFAR-10 (issue 26): train the runs of reports/cifar10/plan.toml that are
# not committed under reports/cifar10/runs/ yet (niced; each completed run is copied in there),
# then write reports/cifar10.md from the committed runs, with a pending row for the rest.
#
#   bash reports/make_cifar10_report.sh                    # train what remains, then report
#   bash reports/make_cifar10_report.sh --only squeezenet_dsc-cifar10-linear15-s0
#   bash reports/make_cifar10_report.sh --report-only      # regenerate the report, no training
#   bash reports/make_cifar10_report.sh --park             # day's end: park unfinished plateau runs
#
# Runs in progress train outside the checkout ($CIFAR10_RUNS); extra options go to archbench suite
# (e.g. --set precision=bf16). Data: the CIFAR-10 archive when $ARCHBENCH_DATA holds
# cifar-10-batches-py/ or cifar-10-python.tar.gz (the user's own command), else the JPEG folder.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${ARCHBENCH_DATA:-$HOME/.cache/archbench/data}"
runs="${CIFAR10_RUNS:-$HOME/archbench-runs/cifar10}"
shared="${SHARED_DATA:-../shared/data}"
training=1
for argument in "$@"; do
  case "$argument" in --report-only | --park) training=0 ;; esac
done
if [ -d "$data/cifar-10-batches-py" ] || [ -f "$data/cifar-10-python.tar.gz" ]; then
  source_options=(--data-dir "$data")
else
  if [ "$training" = 1 ] && [ ! -d "$data/cifar10-jpg/test" ]; then
    mkdir -p "$data"
    tar -xzf "$shared/cifar10-jpg.tar.gz" -C "$data"
  fi
  source_options=(--datasets "imagefolder:$data/cifar10-jpg")
fi
nice -n 19 archbench suite --file reports/cifar10/plan.toml "${source_options[@]}" \
  --runs-dir "$runs" --results-dir reports/cifar10/runs --parked-dir reports/cifar10/in-progress \
  --report reports/cifar10.md --compare-study souza2020 \
  --title "The study's five networks on CIFAR-10" "$@"
