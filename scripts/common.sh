# Shared by scripts/main.sh and scripts/test.sh: installs what ember needs from Debian
# (only what is missing) and configures a build directory.
set -euo pipefail

EMBER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMBER_PACKAGES=(cmake ninja-build g++ pkg-config libopenblas-dev zlib1g-dev libgtest-dev
                libbenchmark-dev nlohmann-json3-dev libcli11-dev libstb-dev dataset-fashion-mnist)

ember_install_dependencies() {
  local missing=()
  for p in "${EMBER_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "ember: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ -d /usr/local/cuda/bin ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  if ! command -v nvcc >/dev/null 2>&1; then
    echo "ember: the CUDA toolkit (nvcc, cuBLAS, cuDNN 9) is required to build; install it under /usr/local/cuda" >&2
    exit 1
  fi
}

# The CUDA architecture to build for: the GPU's own when there is one, else Hopper (one
# architecture keeps the build short; set EMBER_CUDA_ARCH to override).
ember_cuda_arch() {
  if [ -n "${EMBER_CUDA_ARCH:-}" ]; then
    echo "$EMBER_CUDA_ARCH"
  elif command -v nvidia-smi >/dev/null 2>&1 &&
       cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1) &&
       [ -n "$cap" ]; then
    echo "${cap/./}"
  else
    echo 90
  fi
}

ember_configure() {
  local build_dir="$1"
  shift
  cmake -S "$EMBER_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$(ember_cuda_arch)" "$@" >/dev/null
}
