#!/usr/bin/env bash
# Build the ROS interfaces (msg/, srv/) with rosidl + ament_cmake from the pip wheels into build/ and
# install/ (with CONVERSEG_ROS_DISTRO=jazzy: .venv-jazzy's wheels into build-jazzy/ and install-jazzy/).
# Idempotent: skipped when msg/, srv/, CMakeLists.txt, package.xml, nodes/, the launch, config and RViz files
# and this script are unchanged (hash stamp in install/). Use: bash scripts/build_interfaces.sh [--force]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
_cs_root=$root
# shellcheck disable=SC1091
. scripts/distro.sh
# The distro's venv, whatever is active (the ROS wheels' CMake files and generators come from it).
export VIRTUAL_ENV="$_cs_venv" PATH="$_cs_venv/bin:$PATH"
unset PYTHONHOME PYTHONPATH LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE  # nothing of another distro
build="$_cs_build"
install="$_cs_install"
stamp="$install/.converseg-interfaces-stamp"
want=$( (cat msg/*.msg srv/*.srv CMakeLists.txt package.xml nodes/* launch/*.py config/*.yaml config/*.xml rviz/*.rviz \
  "$0"; echo "$_cs_distro") | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != "--force" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
   && [ -d "$install/lib/python3.11/site-packages/converseg_ros/msg" ]; then
  echo "[build_interfaces] up to date ($install)"
  exit 0
fi

# The wheels' exported CMake files name the wheel-build machine's Python and NumPy include directories;
# point them at this machine's. NumPy's headers live inside the venv, and when the venv sits inside this
# source tree CMake refuses to export an include path "prefixed in the source directory" (CMP0052), so
# they are reached through a symlink outside the tree. Idempotent.
py_inc=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_real=$(python -c 'import numpy; print(numpy.get_include())')
np_link="${XDG_CACHE_HOME:-$HOME/.cache}/converseg_ros/numpy-include-$(echo "$VIRTUAL_ENV" | sha256sum | cut -c1-12)"
mkdir -p "$(dirname "$np_link")"
ln -sfn "$np_real" "$np_link"
(grep -rlF --include='*.cmake' -e /opt/python/cp311-cp311/ -e "$np_real" "$VIRTUAL_ENV/share" 2>/dev/null || true) \
  | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_link#g" \
         -e "s#$np_real#$np_link#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
done

mkdir -p "$build"
log="$build/build_interfaces.log"
# RPATH: the generated libraries find each other without LD_LIBRARY_PATH (lib/ and the Python extension
# modules three levels below it), so a plain `python` with only PYTHONPATH set can load the messages.
echo "[build_interfaces] building msg/ and srv/ into $install"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"   # rosidl finds its typesupports through the ament index
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VIRTUAL_ENV" -DCMAKE_INSTALL_PREFIX="$install" \
  -DPython3_EXECUTABLE="$(command -v python)" -DPython3_NumPy_INCLUDE_DIR="$np_link" \
  -DCONVERSEG_INSTALL_PYTHON_SOURCES=OFF \
  -DCMAKE_INSTALL_RPATH='$ORIGIN;$ORIGIN/../../..' -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON \
  -DBUILD_TESTING=OFF > "$log" 2>&1 || { cat "$log"; exit 1; }
cmake --build "$build" -j2 >> "$log" 2>&1 || { tail -50 "$log"; exit 1; }
cmake --install "$build" >> "$log" 2>&1 || { tail -50 "$log"; exit 1; }
echo "$want" > "$stamp"
echo "[build_interfaces] done (log: $log)"
