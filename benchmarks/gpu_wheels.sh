#!/usr/bin/env bash
# The packages that benchmarks/gpu_session.py needs and the device machine's image lacks, as wheels in .whl/
# (git-ignored), to carry there: savflow and sam2 built here, the rest at the versions .venv holds (the ones the
# tests ran with). The image already has torch, torchvision, numpy, pillow, OpenCV, pandas, PyYAML, tqdm,
# tensorboard, matplotlib, tabulate, portalocker and cloudpickle (/work/.library/device/KINDS.md).
#
#   bash .ci/setup && bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]   (3.12 by default: the device's Python)
#
# It prints the folder's size: what travels to the device must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${1:-3.12}"
dest=.whl
pip=.venv/bin/pip
rm -rf "$dest"
mkdir -p "$dest"

pinned() {  # NAME -> NAME==VERSION as installed in .venv
  local line
  line=$("$pip" freeze 2>/dev/null | grep -i "^$1==" || true)
  [ -n "$line" ] || { echo "gpu_wheels: $1 is not installed in .venv (run .ci/setup)" >&2; exit 2; }
  echo "$line"
}

pure=()  # pure Python: a wheel whatever the Python (some are sdists only, built here)
for name in hydra-core omegaconf antlr4-python3-runtime iopath fvcore yacs termcolor tensordict pyvers; do
  pure+=("$(pinned "$name")")
done
"$pip" wheel -q --no-deps --no-build-isolation -w "$dest" "${pure[@]}"
binary=()  # built per Python: the device's
for name in pycocotools zlib-ng; do
  binary+=("$(pinned "$name")")
done
"$pip" download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" "${binary[@]}"
# sam2's sdist, without its optional CUDA extension (its Python fallback is what the release uses without it),
# and savflow itself
SAM2_BUILD_CUDA=0 "$pip" wheel -q --no-deps --no-build-isolation -w "$dest" "$(pinned sam2)"
"$pip" wheel -q --no-deps --no-build-isolation -w "$dest" .
ls -1 "$dest"
du -sh "$dest"
