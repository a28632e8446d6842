#!/usr/bin/env bash
# Installs a built ember into a temporary prefix, checks that the install is what a user
# may rely on (only public headers: no kernels/, no CUDA in the CMake package or ember.pc),
# then builds and runs a tiny user project (scripts/consumer) outside the tree twice: with
# CMake's find_package(ember) and with g++ $(pkg-config --cflags --libs ember), each
# without any CUDA include or library path in the environment.
# Usage: consumer-check.sh BUILD_DIR
set -euo pipefail
build_dir="$(cd "$1" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cp -r "$here/consumer" "$work/src"

fail() {
  echo "consumer: $*" >&2
  exit 1
}
echo "consumer: the install holds the public API only"
[ -f "$work/prefix/include/ember/ember.h" ] || fail "include/ember/ember.h is not installed"
[ ! -e "$work/prefix/include/ember/kernels" ] || fail "kernels/ headers are installed"
if grep -rlE '#[[:space:]]*include[[:space:]]*<(cuda|cublas|cudnn|curand|cub/|thrust/)' \
  "$work/prefix/include"; then
  fail "the installed headers above include CUDA headers"
fi
package_files=("$work"/prefix/lib*/cmake/ember/*.cmake "$work"/prefix/lib*/pkgconfig/ember.pc)
# Comments may say why there is no CUDA; the rest may not name it.
if grep -HnE -i 'CUDAToolkit|CUDA::|cudart|cublas|curand|cudnn|/usr/local/cuda' \
  "${package_files[@]}" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#'; then
  fail "the CMake package or ember.pc names CUDA (above): libember.so links it privately"
fi

# A user's shell: no CUDA include or library folders.
no_cuda_env=(env -u CPATH -u C_INCLUDE_PATH -u CPLUS_INCLUDE_PATH -u LIBRARY_PATH)

echo "consumer: CMake find_package(ember)"
"${no_cuda_env[@]}" cmake -S "$work/src" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
"${no_cuda_env[@]}" cmake --build "$work/build" >/dev/null
"$work/build/consumer"

echo "consumer: g++ \$(pkg-config --cflags --libs ember)"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$(ls -d "$work"/prefix/lib/*/pkgconfig 2>/dev/null | tr '\n' ':')${PKG_CONFIG_PATH:-}"
# shellcheck disable=SC2046
"${no_cuda_env[@]}" g++ -Wall -Wextra -pedantic -Werror -o "$work/consumer-pc" \
  "$work/src/main.cpp" $(pkg-config --cflags --libs ember)
"$work/consumer-pc"
echo "consumer: both builds ran"
