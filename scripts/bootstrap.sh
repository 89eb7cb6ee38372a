#!/usr/bin/env bash
# Idempotent set-up: .venv with the pinned stack (torch, transformers, peft, sam2, ROS 2 Kilted wheels),
# this package in editable mode, and the ROS interfaces built into install/. A second run only checks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
python=${CONVERSEG_PYTHON:-python3.11}

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv"
  "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

stamp="$venv/.converseg-stamp"
want=$(cat requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing the pinned Python stack (first run: a few minutes)"
  pip install -q --upgrade pip wheel setuptools
  # torch/torchvision first and alone: the CUDA build that also runs on CPU (README "Versions").
  pip install -q -r requirements/torch.txt
  pip install -q -r requirements/core.txt -r requirements/ros.txt -r requirements/dev.txt
  # sam2 must not build in isolation: that would pull a second torch stack into a temp env.
  SAM2_BUILD_CUDA=0 pip install -q --no-build-isolation --no-deps sam2==1.1.0
  pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# Headless Chromium + its WebDriver for the review-page test (Debian packages; apt only when missing).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing chromium + chromium-driver (apt)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
        chromium chromium-driver; } >/dev/null || echo "[bootstrap] chromium not installed: the browser test will skip"
  else
    echo "[bootstrap] no chromium/chromedriver and no root apt-get: the review-page browser test will skip"
  fi
fi

if [ -f scripts/build_interfaces.sh ]; then
  bash scripts/build_interfaces.sh
fi
