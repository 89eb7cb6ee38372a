# shellcheck shell=bash
# Source me: makes the interfaces built by scripts/build_interfaces.sh (install/) importable, keeps DDS
# traffic on this machine and ROS logs in a temporary folder.
#   . scripts/ros_env.sh            # from anywhere; activates .venv when no venv is active
# Respects values already set by the caller (ROS_DOMAIN_ID, ROS_LOG_DIR, ROS_HOME).
_cs_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$_cs_root/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$_cs_root/.venv/bin/activate"
fi
_cs_install="$_cs_root/install"
export AMENT_PREFIX_PATH="$_cs_install${VIRTUAL_ENV:+:$VIRTUAL_ENV}"
export LD_LIBRARY_PATH="$_cs_install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$_cs_install/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Hard rule: discovery stays on 127.0.0.1 (the default range multicasts off the machine).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# A domain of our own per shell/session (0..101) unless the caller chose one.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}"
if [ -z "${ROS_LOG_DIR:-}" ]; then
  ROS_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/converseg-roslog.XXXXXX")
  export ROS_LOG_DIR
fi
export ROS_HOME="${ROS_HOME:-$ROS_LOG_DIR}"
unset _cs_root _cs_install
