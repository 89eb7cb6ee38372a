#!/usr/bin/env bash
# GPU benchmark of the full-size ConverSeg-Net (random weights, no model download), bf16 and fp32.
#   bash bench/gpu_benchmark.sh OUT_DIR [bench/gpu_benchmark.py options]
# Needs a CUDA machine whose python3 has torch with CUDA (plus numpy, scikit-image, opencv, safetensors,
# huggingface_hub, tokenizers). What is missing (bench/gpu_requirements.txt) is installed into a private
# folder: from wheels in .whl/ when present (made by bench/gpu_wheels.sh, for machines without registry
# access), else from the package registries. Results: OUT_DIR/gpu_benchmark.json and .md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: bash bench/gpu_benchmark.sh OUT_DIR [options]}
shift
py=${CONVERSEG_BENCH_PYTHON:-python3}
site=${CONVERSEG_BENCH_SITE:-${TMPDIR:-/tmp}/converseg-bench-site}
case " $* " in
  *" --smoke "*) ;;  # a check of the script on any device
  *) "$py" -c 'import torch, sys; torch.cuda.is_available() or sys.exit("gpu_benchmark: torch sees no CUDA GPU")' ;;
esac
if [ ! -f "$site/.complete" ]; then
  rm -rf "$site"
  if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$root"/.whl/*.whl
  else
    grep -v '^sam2' "$root/bench/gpu_requirements.txt" > "${TMPDIR:-/tmp}/converseg-gpu-reqs.txt"
    "$py" -m pip install -q --no-deps --target "$site" -r "${TMPDIR:-/tmp}/converseg-gpu-reqs.txt"
    SAM2_BUILD_CUDA=0 "$py" -m pip install -q --no-deps --no-build-isolation --target "$site" sam2==1.1.0
  fi
  touch "$site/.complete"
fi
export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CONVERSEG_CACHE="${CONVERSEG_CACHE:-${TMPDIR:-/tmp}/converseg-bench-cache}" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$py" "$root/bench/gpu_benchmark.py" --out "$out" "$@"
