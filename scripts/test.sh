#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, then the whole test suite on ROS 2 Kilted and the
# ROS part (test/ros: the node end to end, tools, launch helpers, two hosts) again on ROS 2 Jazzy (CPU, tiny
# random-weight models, real ROS 2 nodes over Fast DDS on 127.0.0.1 or inside test network namespaces).
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k engine
# CONVERSEG_TEST_DISTROS="kilted" (or "jazzy") runs only that distro's part.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
distros=${CONVERSEG_TEST_DISTROS:-kilted jazzy}
case " $distros " in *" jazzy "*) CONVERSEG_ROS_DISTRO=jazzy bash scripts/bootstrap.sh ;; *) bash scripts/bootstrap.sh ;; esac
echo "[test] ruff"
.venv/bin/ruff check .
failed=0
for distro in $distros; do
  # Kilted: everything, 10 start-up signal tries; Jazzy: the ROS part, 4 tries (CI's time).
  # The improve loop end to end (data engine, training, promotion: no ROS difference) runs on Kilted only;
  # its node parts (recorder, hot swap) have their own tests in test/ros, which run on both.
  if [ "$distro" = kilted ]; then paths=(test); tries=10; else paths=(test/ros --deselect test/ros/test_improve_loop.py); tries=4; fi
  echo "[test] pytest on ROS 2 $distro: ${paths[*]}"
  # A fresh shell per distro: its venv, install folder and a domain id of its own (scripts/ros_env.sh).
  env -u VIRTUAL_ENV -u PYTHONPATH -u LD_LIBRARY_PATH -u AMENT_PREFIX_PATH -u ROS_DOMAIN_ID \
    CONVERSEG_ROS_DISTRO="$distro" CONVERSEG_STARTUP_SIGNAL_TRIES="${CONVERSEG_STARTUP_SIGNAL_TRIES:-$tries}" bash -c '. scripts/ros_env.sh && exec python -m pytest -q -p no:cacheprovider --timeout=600 "$@"' \
    pytest "${paths[@]}" "$@" || failed=1
done
exit "$failed"
