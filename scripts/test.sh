#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, then the whole test suite on this machine
# (CPU, tiny random-weight models, real ROS 2 nodes over Fast DDS on 127.0.0.1).
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k engine
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. scripts/ros_env.sh   # venv, built interfaces, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, own domain id
echo "[test] ruff"
ruff check .
echo "[test] pytest"
python -m pytest -q -p no:cacheprovider --timeout=600 test "$@"
