# shellcheck shell=bash
# Sourced by bootstrap.sh, build_interfaces.sh and ros_env.sh (with $_cs_root set): the ROS 2 distro
# CONVERSEG_ROS_DISTRO (kilted, the default, or jazzy) -> its venv, build and install folders.
#   kilted: .venv        build/        install/         (requirements/ros.txt)
#   jazzy:  .venv-jazzy  build-jazzy/  install-jazzy/   (requirements/ros-jazzy.txt; ROS wheels only, the
#           non-ROS packages are shared from .venv: scripts/shared_site.py)
_cs_distro=${CONVERSEG_ROS_DISTRO:-kilted}
case "$_cs_distro" in
  kilted) _cs_suffix="" ; _cs_ros_req=requirements/ros.txt ;;
  jazzy)  _cs_suffix="-jazzy" ; _cs_ros_req=requirements/ros-jazzy.txt ;;
  *) echo "CONVERSEG_ROS_DISTRO=$_cs_distro: supported are kilted (default) and jazzy" >&2; return 1 ;;
esac
_cs_venv="$_cs_root/.venv$_cs_suffix"
_cs_build="$_cs_root/build$_cs_suffix"
_cs_install="$_cs_root/install$_cs_suffix"
