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
# (e.g. --set precision=bf16). Data: the user's own command, `--dataset cifar10 --data-dir D`, on
# torchvision's archive in $ARCHBENCH_DATA; on a machine without it, the archive is written once
# from the shared CIFAR-10 JPEGs (benchmarks/make_cifar_archive.py).
# A committed report must come from committed code: a checkout with modified tracked files is
# refused unless --allow-dirty (the report then names them).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${ARCHBENCH_DATA:-$HOME/.cache/archbench/data}"
runs="${CIFAR10_RUNS:-$HOME/archbench-runs/cifar10}"
shared="${SHARED_DATA:-../shared/data}"
training=1
allow_dirty=0
suite_options=()
for argument in "$@"; do
  case "$argument" in
    --allow-dirty) allow_dirty=1; continue ;;
    --report-only | --park) training=0 ;;
  esac
  suite_options+=("$argument")
done
if [ "$allow_dirty" = 0 ]; then
  changed="$(git status --porcelain --untracked-files=no | cut -c4- | tr '\n' ' ')"
  if [ -n "$changed" ]; then
    echo "make_cifar10_report.sh: the checkout has uncommitted changes (${changed% }); commit or stash them, or pass --allow-dirty (the report then names them)" >&2
    exit 1
  fi
fi
if [ "$training" = 1 ] && [ ! -d "$data/cifar-10-batches-py" ] && [ ! -f "$data/cifar-10-python.tar.gz" ]; then
  mkdir -p "$data"
  [ -d "$data/cifar10-jpg/test" ] || tar -xzf "$shared/cifar10-jpg.tar.gz" -C "$data"
  nice -n 19 python benchmarks/make_cifar_archive.py "$data/cifar10-jpg" "$data"
fi
if [ -d "$data/cifar-10-batches-py" ] || [ -f "$data/cifar-10-python.tar.gz" ]; then
  source_options=(--data-dir "$data")
else
  source_options=(--datasets "imagefolder:$data/cifar10-jpg")  # --report-only before any archive
fi
nice -n 19 archbench suite --file reports/cifar10/plan.toml "${source_options[@]}" \
  --runs-dir "$runs" --results-dir reports/cifar10/runs --parked-dir reports/cifar10/in-progress \
  --report reports/cifar10.md --compare-study souza2020 \
  --title "The study's five networks on CIFAR-10" ${suite_options[@]+"${suite_options[@]}"}
