#!/usr/bin/env bash
# Installs a built ember into a temporary prefix and builds and runs a tiny user project
# (scripts/consumer) outside the tree twice: with CMake's find_package(ember) and with
# g++ $(pkg-config --cflags --libs ember). Usage: consumer-check.sh BUILD_DIR
set -euo pipefail
build_dir="$(cd "$1" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cp -r "$here/consumer" "$work/src"

echo "consumer: CMake find_package(ember)"
cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"

echo "consumer: g++ \$(pkg-config --cflags --libs ember)"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig:$(ls -d "$work"/prefix/lib/*/pkgconfig 2>/dev/null | tr '\n' ':')${PKG_CONFIG_PATH:-}"
# shellcheck disable=SC2046
g++ -o "$work/consumer-pc" "$work/src/main.cpp" $(pkg-config --cflags --libs ember)
"$work/consumer-pc"
echo "consumer: both builds ran"
