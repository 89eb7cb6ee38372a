# shellcheck shell=bash
# Source me: makes the interfaces built by scripts/build_interfaces.sh (install/) importable, keeps DDS
# traffic on this machine and ROS logs in a temporary folder.
#   . scripts/ros_env.sh                              # Kilted: .venv, install/
#   export CONVERSEG_ROS_DISTRO=jazzy; . scripts/ros_env.sh   # Jazzy: .venv-jazzy, install-jazzy/
# Activates the distro's venv (replacing another one that is active) and drops the other distro's folders
# from the search paths. Respects values already set by the caller (ROS_DOMAIN_ID, ROS_LOG_DIR, ROS_HOME).
_cs_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$_cs_root/scripts/distro.sh" || return 1
_cs_strip() {  # $1: a path list; prints it without this repository's venvs and install folders
  local out="" part
  local IFS=:
  for part in $1; do
    case "$part" in
      "$_cs_root"/.venv*|"$_cs_root"/install*|"") ;;
      *) out="${out:+$out:}$part" ;;
    esac
  done
  printf '%s' "$out"
}
if [ "${VIRTUAL_ENV:-}" != "$_cs_venv" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ] && command -v deactivate >/dev/null 2>&1; then deactivate; fi
  # shellcheck disable=SC1091
  [ -f "$_cs_venv/bin/activate" ] && . "$_cs_venv/bin/activate"
fi
# The ROS wheels re-exec python once with their library folders on LD_LIBRARY_PATH, unless this is set.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export CONVERSEG_ROS_DISTRO="$_cs_distro"
_cs_ament=$(_cs_strip "${AMENT_PREFIX_PATH:-}")
_cs_ld=$(_cs_strip "${LD_LIBRARY_PATH:-}")
_cs_py=$(_cs_strip "${PYTHONPATH:-}")
export AMENT_PREFIX_PATH="$_cs_install${VIRTUAL_ENV:+:$VIRTUAL_ENV}${_cs_ament:+:$_cs_ament}"
export LD_LIBRARY_PATH="$_cs_install/lib${_cs_ld:+:$_cs_ld}"
export PYTHONPATH="$_cs_install/lib/python3.11/site-packages${_cs_py:+:$_cs_py}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Hard rule: discovery stays on 127.0.0.1 (the default range multicasts off the machine). Jazzy and later
# read ROS_AUTOMATIC_DISCOVERY_RANGE, Humble reads ROS_LOCALHOST_ONLY: set both.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
# A domain of our own per shell/session (0..101) unless the caller chose one.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}"
if [ -z "${ROS_LOG_DIR:-}" ]; then
  ROS_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/converseg-roslog.XXXXXX")
  export ROS_LOG_DIR
fi
export ROS_HOME="${ROS_HOME:-$ROS_LOG_DIR}"
unset _cs_root _cs_install _cs_build _cs_venv _cs_suffix _cs_ros_req _cs_distro _cs_ament _cs_ld _cs_py
unset -f _cs_strip
