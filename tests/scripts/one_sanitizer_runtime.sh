#!/usr/bin/env bash
# CTest library.one_sanitizer_runtime (EMBER_SANITIZE builds): the given binaries, and all
# they load, name sanitizer runtimes of one compiler only, GCC's (libasan, libubsan,
# libtsan, liblsan) or clang's (libclang_rt.*), never both.
set -euo pipefail
libs="$(ldd "$@")"
echo "$libs" | grep -E 'san|clang_rt' || echo "(no shared sanitizer runtime: linked statically)"
if grep -q 'libclang_rt' <<<"$libs" && grep -qE 'lib(a|ub|t|l)san\.so' <<<"$libs"; then
  echo "error: GCC's and clang's sanitizer runtimes are both loaded" >&2
  exit 1
fi
