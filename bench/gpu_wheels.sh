#!/usr/bin/env bash
# Put the wheels bench/gpu_benchmark.sh needs into .whl/ (git-ignored locally), for a CUDA machine that
# cannot reach the package registries: pure-Python wheels, downloaded where PyPI has them, built here
# where it has only sources (iopath, antlr4, sam2 without its optional CUDA extension).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p .whl
reqs=$(grep -v '^\s*#' bench/gpu_requirements.txt | grep -v '^\s*$')
for req in $reqs; do
  name=${req%%==*}
  if ls .whl/"$(echo "$name" | tr - _)"-*.whl >/dev/null 2>&1; then continue; fi
  pip download -q --no-deps --only-binary=:all: -d .whl "$req" 2>/dev/null \
    || SAM2_BUILD_CUDA=0 pip wheel -q --no-deps --no-build-isolation -w .whl "$req"
done
ls -la .whl
