#!/usr/bin/env bash
# The GPU half of the study, on one machine with an NVIDIA GPU, in one command (about 10
# minutes on a modern GPU, most of it the install and the CPU backends):
#   1. a virtual environment with archbench[gpu,test]: onnxruntime-gpu and never the CPU wheel;
#   2. the CUDA tests (pytest -m cuda);
#   3. SqueezeNet-DSC trained on the shared CIFAR-10 JPEGs for a few epochs on cuda, the other
#      four networks for one epoch (only their latency is used), all five profiled on all five
#      backends (cpu-eager, cpu-onnxruntime, cuda-eager, cuda-naive, cuda-onnxruntime);
#   4. reports/gpu-<gpu name>.md with the study's GPU-against-CPU table.
#
# Usage (from anywhere; it works in the repository root):
#   bash benchmarks/gpu_check.sh              # the real thing
#   bash benchmarks/gpu_check.sh --dry-run    # print every command, run nothing
# Options:
#   --no-install      use the active Python environment (archbench already installed)
#   --device cpu      the same pipeline without a GPU: CPU backends only (a smoke test)
#   --epochs N        SqueezeNet-DSC's epochs (default 3)
#   --archs LIST      comma-separated networks (default the study's five)
#   --data SPEC       dataset spec (default: the full shared CIFAR-10 JPEGs, extracted once)
#   --samples N       batch-1 latency samples per backend (default 1000)
#   --no-cold-start   skip each backend's fresh-interpreter cold-start and memory figures
#   --work DIR        scratch directory for data and runs (default $TMPDIR/archbench-gpu-check)
#   --report FILE     the report (default reports/gpu-<gpu name>.md, or cpu-<host>.md)
# Environment: ARCHBENCH_GPU_VENV (default .gpu-venv), SHARED_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
install=1
device=cuda
epochs=3
archs="squeezenet_dsc,squeezenet,mobilenet,alexnet,vgg19"
data=""
samples=1000
profile_flags=()
work="${TMPDIR:-/tmp}/archbench-gpu-check"
report=""
venv="${ARCHBENCH_GPU_VENV:-.gpu-venv}"
shared="${SHARED_DATA:-../shared/data}"

fail() {
  echo "gpu_check: error: $*" >&2
  exit 2
}

need_value() {
  [ "$#" -ge 2 ] && [ -n "$2" ] || fail "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --no-install) install=0 ;;
    --device) need_value "$@"; device="$2"; shift ;;
    --epochs) need_value "$@"; epochs="$2"; shift ;;
    --archs) need_value "$@"; archs="$2"; shift ;;
    --data) need_value "$@"; data="$2"; shift ;;
    --samples) need_value "$@"; samples="$2"; shift ;;
    --no-cold-start) profile_flags+=(--no-cold-start) ;;
    --work) need_value "$@"; work="$2"; shift ;;
    --report) need_value "$@"; report="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) fail "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$device" in cuda | cpu) ;; *) fail "--device takes cuda or cpu, got $device" ;; esac
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || fail "--epochs takes a positive integer, got $epochs"
[[ "$samples" =~ ^[1-9][0-9]*$ ]] || fail "--samples takes a positive integer, got $samples"

started=$SECONDS
step() {
  echo "== [$((SECONDS - started))s] $*"
}

# Print a command; run it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

slug() {
  printf '%s' "$1" | tr -cs 'A-Za-z0-9._' '-' | sed 's/^-*//; s/-*$//'
}

# --- the machine ---------------------------------------------------------------------------
if [ "$device" = cuda ]; then
  if gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) \
    && [ -n "$gpu_name" ]; then
    :
  elif [ "$dry_run" -eq 1 ]; then
    gpu_name="GPU"
  else
    fail "no NVIDIA GPU found (nvidia-smi failed); --device cpu runs the pipeline without one"
  fi
  backends=all
  report="${report:-reports/gpu-$(slug "$gpu_name").md}"
else
  gpu_name="none"
  backends=cpu
  report="${report:-reports/cpu-$(slug "$(hostname)").md}"
fi
step "device $device ($gpu_name); report $report"

# --- 1. environment ------------------------------------------------------------------------
if [ "$install" -eq 1 ]; then
  step "install archbench[gpu,test] into $venv"
  [ -x "$venv/bin/python" ] || run python3 -m venv "$venv"
  py="$venv/bin/python"
  run "$py" -m pip install --quiet --upgrade pip
  run "$py" -m pip install --quiet -e ".[gpu,test]"
  if [ "$dry_run" -eq 0 ] && "$py" -m pip show --quiet onnxruntime >/dev/null 2>&1; then
    fail "the CPU onnxruntime is installed beside onnxruntime-gpu in $venv; remove $venv and rerun"
  fi
else
  py="${PYTHON:-python3}"
fi
if [ "$device" = cuda ]; then
  run "$py" -c "import onnxruntime as ort, torch, sys
providers = ort.get_available_providers()
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU', torch.cuda.is_available())
print('onnxruntime', ort.__version__, providers)
sys.exit(0 if torch.cuda.is_available() and 'CUDAExecutionProvider' in providers else 1)"
fi

# --- 2. CUDA tests -------------------------------------------------------------------------
if [ "$device" = cuda ]; then
  step "CUDA tests"
  run "$py" -m pytest -q -m cuda tests
fi

# --- 3. data, training and profiles --------------------------------------------------------
if [ -z "$data" ]; then
  images="$work/data/cifar10-jpg"
  if [ ! -d "$images/test" ]; then
    step "extract the CIFAR-10 JPEGs into $work/data"
    [ "$dry_run" -eq 1 ] || [ -f "$shared/cifar10-jpg.tar.gz" ] \
      || fail "$shared/cifar10-jpg.tar.gz not found (set SHARED_DATA)"
    run mkdir -p "$work/data"
    run tar -xzf "$shared/cifar10-jpg.tar.gz" -C "$work/data"
  fi
  data="imagefolder:$images"
fi

# squeezenet_dsc trains for --epochs; the others one epoch: only their latency is used.
suite_toml() {
  echo "# written by benchmarks/gpu_check.sh"
  echo 'archs = []'
  echo 'datasets = []'
  local arch arch_epochs arch_list
  IFS=',' read -ra arch_list <<<"$archs"
  for arch in "${arch_list[@]}"; do
    arch_epochs=1
    [ "$arch" = squeezenet_dsc ] && arch_epochs=$epochs
    printf '[[runs]]\narch = "%s"\nset = { max_epochs = %s }\n' "$arch" "$arch_epochs"
  done
}
suite_file="$work/gpu-check.toml"
if [ "$dry_run" -eq 1 ]; then
  echo "+ cat > $suite_file <<EOF"
  suite_toml
  echo "EOF"
else
  mkdir -p "$work"
  suite_toml >"$suite_file"
fi

# A fresh suite directory per check: every figure in the report is measured by this check.
runs="$work/runs-$device-$(date +%Y%m%d-%H%M%S)"
step "train and profile ($archs) on $data"
status=0  # a failed run still leaves the others in the report; the exit status tells
run "$py" -m archbench suite --file "$suite_file" --datasets "$data" --runs-dir "$runs" \
  --set "device=$device" --backends "$backends" --samples "$samples" ${profile_flags[@]+"${profile_flags[@]}"} \
  --quiet || status=$?

# --- 4. report -----------------------------------------------------------------------------
step "report"
# The study's baseline is SqueezeNet; with --archs leaving it out, the first network listed.
baseline=squeezenet
[[ ",$archs," == *",squeezenet,"* ]] || baseline="${archs%%,*}"
run "$py" -m archbench report --runs-dir "$runs" --compare-study souza2020 \
  --baseline "$baseline" --out "$report" --title "archbench on $gpu_name against this CPU" \
  --note "written by benchmarks/gpu_check.sh: squeezenet_dsc $epochs epochs, the others 1 epoch (latency only); $samples batch-1 samples per backend; TF32 off"
step "done in $((SECONDS - started))s: $report"
if [ "$dry_run" -eq 0 ] && [ $((SECONDS - started)) -gt 600 ]; then
  echo "gpu_check: note: over the 10-minute budget" >&2
fi
exit "$status"
