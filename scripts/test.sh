#!/usr/bin/env bash
# Builds ember with its tests and runs the whole suite with CTest (CUDA tests skip, and
# are listed as skipped, when there is no GPU); then installs the build into a temporary
# prefix and builds a small user program against it with CMake and with pkg-config.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ember_install_dependencies
ember_configure "$EMBER_ROOT/build-test" -DEMBER_BUILD_TESTS=ON -DEMBER_BUILD_BENCHMARKS=ON
cmake --build "$EMBER_ROOT/build-test"
(cd "$EMBER_ROOT/build-test" && ctest --output-on-failure -j "$(nproc)" "$@")
bash "$EMBER_ROOT/scripts/consumer-check.sh" "$EMBER_ROOT/build-test"
