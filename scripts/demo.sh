#!/usr/bin/env bash
# The full ROS demo: converseg_node + camera replay of bundled real photos + conversational queries.
# Writes overlay PNGs and summary.json to out/demo (or $1). Uses converseg-3b when its weights are in the
# local Hugging Face cache, otherwise the untrained tiny preset (said on the console and on each overlay).
#   bash scripts/demo.sh [OUT_DIR] [extra converseg_ros.ros.tools.demo options, e.g. --device cuda]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. scripts/ros_env.sh          # localhost-only DDS, own domain id, logs in a temp folder, install/ on paths
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"   # never download during the demo
out="${1:-$root/out/demo}"
shift || true
echo "[demo] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE logs=$ROS_LOG_DIR"
exec python -m converseg_ros.ros.tools.demo --out "$out" "$@"
