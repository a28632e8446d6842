#!/usr/bin/env bash
# The main job: installs what is missing, builds ember and trains the bundled
# Fashion-MNIST sample (on the GPU if there is one, else on the CPU). Without a CUDA
# toolkit it builds the CPU-only ember (scripts/common.sh).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ember_install_dependencies
ember_configure "$EMBER_ROOT/build" -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_BENCHMARKS=OFF
cmake --build "$EMBER_ROOT/build" --target fashion_cnn
exec "$EMBER_ROOT/build/samples/fashion_cnn" "$@"
