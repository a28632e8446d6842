# Shared by scripts/main.sh and scripts/test.sh: installs what ember needs from Debian
# (only what is missing) and configures a build directory.
#
# Settings (environment): EMBER_CUDA=ON|OFF (default: ON when nvcc is found, on PATH or in
# /usr/local/cuda/bin, else OFF: a CPU-only ember); EMBER_CUDA_ARCH (the CUDA architecture,
# default the GPU's own, else 90); EMBER_WERROR=ON|OFF (warnings as errors, default OFF;
# CI turns it on).
set -euo pipefail

EMBER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMBER_PACKAGES=(cmake ninja-build g++ pkg-config libopenblas-dev zlib1g-dev libgtest-dev
                libbenchmark-dev nlohmann-json3-dev libcli11-dev libstb-dev libpng-dev
                libjpeg62-turbo-dev libprotobuf-dev libonnx-dev libgloo-dev
                python3-venv dataset-fashion-mnist)
# Only for the sanitizer builds and the fuzzers (scripts/sanitize.sh, fuzz.sh): clang and
# its sanitizer and libFuzzer runtimes.
EMBER_RELIABILITY_PACKAGES=(clang-14 libclang-rt-14-dev)

# ember_install_dependencies [MORE_PACKAGES...]: EMBER_PACKAGES and MORE_PACKAGES.
ember_install_dependencies() {
  local missing=()
  for p in "${EMBER_PACKAGES[@]}" "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "ember: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  case "${EMBER_CUDA:-}" in
    OFF)
      echo "ember: building without CUDA (EMBER_CUDA=OFF): ember will run on the CPU only"
      return ;;
    ON | "") ;;
    *)
      echo "ember: EMBER_CUDA must be ON or OFF (or unset), not '${EMBER_CUDA}'" >&2
      exit 1 ;;
  esac
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  if ! command -v nvcc >/dev/null 2>&1; then
    if [ "${EMBER_CUDA:-}" = ON ]; then
      echo "ember: EMBER_CUDA=ON, but there is no CUDA toolkit (nvcc) on PATH or in" \
        "/usr/local/cuda: install CUDA 13 and cuDNN 9 there" >&2
      exit 1
    fi
    echo "ember: no CUDA toolkit (nvcc) on PATH or in /usr/local/cuda: building without CUDA" \
      "(EMBER_CUDA=OFF); ember will run on the CPU only. Install CUDA 13 and cuDNN 9 under" \
      "/usr/local/cuda for the GPU backend."
    export EMBER_CUDA=OFF
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

# ember_configure BUILD_DIR [CMAKE_ARGS...]
ember_configure() {
  local build_dir="$1"
  shift
  local args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DEMBER_WERROR="${EMBER_WERROR:-OFF}")
  if [ "${EMBER_CUDA:-}" = OFF ]; then
    # Not even looked for: a CPU-only build must not pick up a toolkit lying around.
    args+=(-DEMBER_CUDA=OFF -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON)
  else
    args+=(-DEMBER_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$(ember_cuda_arch)")
  fi
  if command -v ccache >/dev/null 2>&1; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    [ "${EMBER_CUDA:-}" = OFF ] || args+=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$EMBER_ROOT" -B "$build_dir" "${args[@]}" "$@" >/dev/null
}
