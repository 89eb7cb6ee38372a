#!/usr/bin/env bash
# Idempotent set-up: .venv with the pinned stack (torch, transformers, peft, sam2, ROS 2 Kilted wheels),
# this package in editable mode, and the ROS interfaces built into install/. A second run only checks.
# CONVERSEG_ROS_DISTRO=jazzy also (after the Kilted set-up) makes .venv-jazzy: the ROS 2 Jazzy wheels only,
# this package, and the Kilted venv's non-ROS packages shared through a .pth (scripts/shared_site.py),
# with the interfaces built into install-jazzy/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
_cs_root=$root
# shellcheck disable=SC1091
. scripts/distro.sh
python=${CONVERSEG_PYTHON:-python3.11}
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE   # the ROS wheels' re-exec must set this venv's library path

make_venv() {  # $1: venv folder
  if [ ! -x "$1/bin/python" ]; then
    echo "[bootstrap] creating $1"
    "$python" -m venv "$1"
  fi
}

# Kilted (always: it also holds the packages a Jazzy venv shares)
venv="$root/.venv"
make_venv "$venv"
stamp="$venv/.converseg-stamp"
want=$(cat requirements/torch.txt requirements/core.txt requirements/ros.txt requirements/dev.txt setup.py \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing the pinned Python stack (first run: a few minutes)"
  "$venv/bin/pip" install -q --upgrade pip wheel setuptools
  # torch/torchvision first and alone: the CUDA build that also runs on CPU (README "Versions").
  "$venv/bin/pip" install -q -r requirements/torch.txt
  "$venv/bin/pip" install -q -r requirements/core.txt -r requirements/ros.txt -r requirements/dev.txt
  # sam2 must not build in isolation: that would pull a second torch stack into a temp env.
  SAM2_BUILD_CUDA=0 "$venv/bin/pip" install -q --no-build-isolation --no-deps sam2==1.1.0
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

if [ "$_cs_distro" != kilted ]; then
  make_venv "$_cs_venv"
  dstamp="$_cs_venv/.converseg-stamp"
  dwant=$( (cat "$_cs_ros_req" setup.py scripts/shared_site.py; echo "$want") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dstamp" 2>/dev/null)" != "$dwant" ]; then
    echo "[bootstrap] $_cs_distro: ROS wheels into $_cs_venv, the rest shared from $venv"
    "$venv/bin/python" scripts/shared_site.py "$venv/lib/python3.11/site-packages" "$_cs_venv"
    "$_cs_venv/bin/pip" install -q --upgrade pip wheel setuptools
    "$_cs_venv/bin/pip" install -q -r "$_cs_ros_req"
    "$_cs_venv/bin/pip" install -q --no-deps --no-build-isolation -e .
    echo "$dwant" > "$dstamp"
  fi
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

CONVERSEG_ROS_DISTRO=kilted bash scripts/build_interfaces.sh
if [ "$_cs_distro" != kilted ]; then
  CONVERSEG_ROS_DISTRO="$_cs_distro" bash scripts/build_interfaces.sh
fi
