#!/usr/bin/env bash
# Builds ember for a lent GPU machine (here) and runs every GPU check on it (there): the
# test suite, compute-sanitizer memcheck on the CUDA tests, the benchmarks and the samples.
#
#   Here:   scripts/gpu-check.sh build
#     Configures and builds build-gpu/ (Release, sm_90 only, relative RPATHs), copies the
#     Fashion-MNIST .gz files into data/fashion-mnist/, and packs what runs there (the test,
#     benchmark and sample binaries, libember.so, and the non-CUDA libraries they need in
#     case that machine lacks them) into build-gpu/carry/: a whole build tree plus the data
#     is over the 64 MiB a call may carry.
#
#   There, through the device tool (docs/benchmarks.md has more):
#     run(command="scripts/gpu-check.sh run", carry=["build-gpu/carry", "data"], timeout_s=600)
#     Unpacks build-gpu/carry/ into build-gpu/, finds cuDNN and cuBLAS (in /usr/local/cuda or
#     inside python3's nvidia.* packages), and writes log.txt, ember_api_tests.json,
#     ember_internal_tests.json and one <bench>.json per benchmark to $OUT. The log is
#     tee'd as it is written, so a run cut at its time limit still returns it.
#     `run STEP...` runs only some of: info tests bench
#     samples memcheck racecheck (default: all but racecheck, in that order; each step gets
#     what is left of GPU_CHECK_BUDGET_S, default 570 s, and a run out of time skips the rest).
#     Carrying the whole build-gpu/ also works when it fits.
#
#   Settings: GPU_CHECK_JOBS (build jobs, default 1), GPU_CHECK_BUDGET_S, GPU_CHECK_SAMPLE_ARGS
#   (added to each sample's arguments, e.g. --quick), FASHION_MNIST_SRC, OUT (default
#   build-gpu/out).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu"
CARRY="$BUILD/carry"
PACK="$CARRY/ember-gpu.tar.xz"
DATA="$ROOT/data/fashion-mnist"
DATA_SRC="${FASHION_MNIST_SRC:-/usr/share/datasets/fashion-mnist}"
CARRY_LIMIT=$((64 * 1024 * 1024))
# The GoogleTest binaries: the API tests (linking libember.so) and the internal ones.
# A string, not an array: step() runs its functions in a new bash, which gets variables only.
TEST_BINS="ember_api_tests ember_internal_tests"
TEST_PATHS=("$BUILD/tests/ember_api_tests" "$BUILD/tests/ember_internal_tests")

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- here ----------------------------------------------------------------------------------

# The shared libraries `bin...` load that are not ember, glibc or CUDA: the machine there
# may lack them (OpenBLAS above all). Prints "soname path" lines.
non_cuda_libs() {
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
    grep -Ev '^(libember\.|linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.)' |
    grep -Ev '^lib(cuda|cudart|cublas|cublasLt|cudnn|curand|nvrtc|nvJitLink)[._]' || true
}

build() {
  cd "$ROOT" || exit 1
  local p
  for p in build-gpu data; do
    git check-ignore -q "$p" || echo "warning: $p/ is not git-ignored: it would travel with the tree"
  done
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
    -DEMBER_BUILD_TESTS=ON -DEMBER_BUILD_SAMPLES=ON -DEMBER_BUILD_BENCHMARKS=ON || exit 1
  # One job by default: the machine that builds is shared.
  cmake --build "$BUILD" -j "${GPU_CHECK_JOBS:-1}" || exit 1

  mkdir -p "$DATA"
  cp -u "$DATA_SRC"/*.gz "$DATA"/ || exit 1

  local bins=()
  mapfile -t bins < <(cd "$ROOT" && find build-gpu/tests build-gpu/benchmarks \
    build-gpu/samples -maxdepth 1 -type f -perm -u=x \
    \( -name 'ember_*_tests' -o -name 'bench_*' -o -path 'build-gpu/samples/*' \) 2>/dev/null |
    sort)
  if [[ ${#bins[@]} -eq 0 ]]; then
    echo "error: nothing to pack under build-gpu/"
    exit 1
  fi
  rm -rf "$CARRY" "$BUILD/fallback-libs"
  mkdir -p "$CARRY" "$BUILD/fallback-libs"
  local soname path
  while read -r soname path; do
    cp -L "$path" "$BUILD/fallback-libs/$soname"
  done < <(non_cuda_libs "${bins[@]}" "$BUILD"/libember.so)
  echo "packing: ${bins[*]} build-gpu/libember.so build-gpu/fallback-libs/{$(cd "$BUILD/fallback-libs" && echo *)}"
  (cd "$ROOT" && XZ_OPT="-6 -T${GPU_CHECK_JOBS:-1}" tar -cJf "$PACK" "${bins[@]}" \
    build-gpu/libember.so* build-gpu/fallback-libs) || exit 1

  local carry_bytes data_bytes
  carry_bytes=$(du -sb "$CARRY" | cut -f1)
  data_bytes=$(du -sb "$ROOT/data" | cut -f1)
  echo "carry: build-gpu/carry $((carry_bytes / 1048576)) MiB + data $((data_bytes / 1048576)) MiB" \
    "(the limit is 64 MiB with the source tree)"
  if ((carry_bytes + data_bytes > CARRY_LIMIT)); then
    echo "error: over the 64 MiB a call may carry"
    exit 1
  fi
  echo 'next, through the device tool: run(command="scripts/gpu-check.sh run",' \
    'carry=["build-gpu/carry", "data"], timeout_s=600)'
}

# --- there ---------------------------------------------------------------------------------

unpack() {
  if [[ -f "$PACK" ]]; then
    echo "unpacking $PACK"
    # tar needs xz for .xz; python3's tarfile does not.
    (cd "$ROOT" && { tar -xJf "$PACK" 2>/dev/null || python3 -m tarfile -e "$PACK" .; }) ||
      return 1
  fi
  local t
  for t in $TEST_BINS; do
    [[ -x "$BUILD/tests/$t" ]] || {
      echo "error: no build-gpu/tests/$t; run 'scripts/gpu-check.sh build' here and" \
        "carry build-gpu/carry (or build-gpu) and data"
      return 1
    }
  done
}

# Folders that may hold the CUDA libraries: the toolkit's, then python3's nvidia.* wheels.
library_roots() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$d" ]] && echo "$d"
  done
  python3 - <<'EOF' 2>/dev/null
import importlib
for name in ("nvidia", "torch"):
    try:
        mod = importlib.import_module(name)
    except Exception:
        continue
    for p in getattr(mod, "__path__", []):
        print(p)
EOF
}

# LD_LIBRARY_PATH with a folder for each CUDA library the binaries need, then a folder of
# links to the fallback libraries for whatever else is missing there (links for the
# missing ones only, so that nothing the machine has is shadowed).
setup_libraries() {
  local roots=() dirs=() soname found root
  mapfile -t roots < <(library_roots)
  for soname in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 \
    libcurand.so.10 libnvrtc.so.13; do
    found=""
    for root in "${roots[@]}"; do
      found=$(find -L "$root" -maxdepth 4 -name "$soname" 2>/dev/null | head -n 1)
      [[ -n "$found" ]] && break
    done
    if [[ -n "$found" ]]; then
      echo "$soname: $found"
      dirs+=("$(dirname "$found")")
    else
      echo "$soname: not found under ${roots[*]}"
    fi
  done
  local path="" d
  for d in "${dirs[@]}"; do
    [[ ":$path:" == *":$d:"* ]] || path="${path:+$path:}$d"
  done
  export LD_LIBRARY_PATH="${path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  local fallback="${TMPDIR:-/tmp}/ember-fallback-libs" missing round
  rm -rf "$fallback" && mkdir -p "$fallback"
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$fallback"
  # A library found only now can need others (OpenBLAS needs libgfortran): a few rounds.
  for round in 1 2 3; do
    mapfile -t missing < <(ldd "${TEST_PATHS[@]}" "$BUILD"/benchmarks/bench_* \
      "$BUILD"/samples/* "$BUILD"/libember.so 2>/dev/null | awk '/not found/ { print $1 }' |
      sort -u)
    ((${#missing[@]})) || break
    for soname in "${missing[@]}"; do
      if [[ -f "$BUILD/fallback-libs/$soname" ]]; then
        ln -sf "$BUILD/fallback-libs/$soname" "$fallback/$soname"
        echo "$soname: not on this machine, using the one built against (round $round)"
      fi
    done
  done
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  if ldd "${TEST_PATHS[@]}" | grep 'not found'; then
    echo "error: libraries still missing (above)"
    return 1
  fi
}

STATUS=0
RESULTS=()
BUDGET="${GPU_CHECK_BUDGET_S:-570}"

# step NAME MAX_SECONDS COMMAND...: runs COMMAND under a time limit (the smaller of
# MAX_SECONDS and what is left of the budget) and records how it ended; the next steps
# run whatever happens.
step() {
  local name=$1 max=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if ((left < 30)); then
    echo "== $name: skipped, ${left}s of the ${BUDGET}s budget left"
    RESULTS+=("$name: skipped (out of time)")
    STATUS=1
    return
  fi
  local limit=$((max < left - 15 ? max : left - 15))
  echo
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS rc=0
  # `timeout` runs programs, so the step's function runs in a bash that inherits it.
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" || rc=$?
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    RESULTS+=("$name: ok (${took}s)")
  elif ((rc == 124 || rc == 137)); then
    RESULTS+=("$name: TIMED OUT after ${took}s")
    STATUS=1
  else
    RESULTS+=("$name: FAILED with exit code $rc (${took}s)")
    STATUS=1
  fi
}

# Line-buffered stdout, so a step killed at its limit has printed what it did.
line_buffered() {
  if command -v stdbuf >/dev/null; then stdbuf -oL -eL "$@"; else "$@"; fi
}

sanitizer() {
  local cs
  cs=$(command -v compute-sanitizer || true)
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [[ -z "$cs" && -x "$c" ]] && cs=$c
  done
  if [[ -z "$cs" ]]; then
    echo "compute-sanitizer not found"
    return 1
  fi
  local t rc=0
  for t in $TEST_BINS; do
    echo "-- $t"
    "$cs" --tool "$1" --error-exitcode 1 "$BUILD/tests/$t" --gtest_filter='*Cuda*' \
      --gtest_brief=1 || rc=1
  done
  return "$rc"
}

# Both test binaries (tests/CMakeLists.txt), each with its own JSON report.
run_tests() {
  local t rc=0
  for t in $TEST_BINS; do
    echo "-- $t"
    line_buffered "$BUILD/tests/$t" --gtest_output="json:$OUT/$t.json" || rc=1
  done
  return "$rc"
}

show_info() {
  nvidia-smi || return 1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv
  if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; fi
}

run_benchmarks() {
  local b rc=0
  for b in "$BUILD"/benchmarks/bench_*; do
    [[ -x "$b" ]] || continue
    echo "-- $(basename "$b")"
    line_buffered "$b" --json "$OUT/$(basename "$b").json" || rc=1
  done
  return "$rc"
}

# Each sample on the GPU (--device cuda: a sample that cannot use it fails instead of
# training on the CPU), with GPU_CHECK_SAMPLE_ARGS added (e.g. --quick).
run_samples() {
  local s rc=0 args=()
  read -r -a args <<<"${GPU_CHECK_SAMPLE_ARGS:-}"
  for s in "$BUILD"/samples/*; do
    [[ -f "$s" && -x "$s" ]] || continue
    echo "-- $(basename "$s") --data $DATA --device cuda ${args[*]}"
    line_buffered "$s" --data "$DATA" --device cuda "${args[@]}" || rc=1
  done
  return "$rc"
}

run_checks() {
  local steps=("$@")
  ((${#steps[@]})) || steps=(info tests bench samples memcheck)
  echo "gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), steps: ${steps[*]}"
  unpack || return 1
  setup_libraries || return 1
  export EMBER_FASHION_MNIST="$DATA"
  # The tests look for the data where this project's build machine keeps it.
  if [[ ! -e /usr/share/datasets/fashion-mnist && -w /usr/share ]]; then
    mkdir -p /usr/share/datasets && ln -s "$DATA" /usr/share/datasets/fashion-mnist
  fi
  local s
  for s in "${steps[@]}"; do
    case "$s" in
      info) step info 60 show_info ;;
      tests)
        # Directly, not through ctest: CTest's files hold the build machine's paths.
        step tests 300 run_tests ;;
      bench) step bench 240 run_benchmarks ;;
      samples) step samples 180 run_samples ;;
      memcheck) step memcheck 300 sanitizer memcheck ;;
      racecheck) step racecheck 300 sanitizer racecheck ;;
      *) echo "unknown step '$s'"; STATUS=1 ;;
    esac
  done

  # At most 8 files come back from $OUT: past that, the JSON files go into one archive.
  local n
  n=$(find "$OUT" -type f | wc -l)
  if ((n > 8)); then
    (cd "$OUT" && tar -czf results-json.tar.gz ./*.json && rm -f ./*.json)
    echo "more than 8 files: the JSON results are in results-json.tar.gz"
  fi
  echo
  echo "== summary"
  printf '%s\n' "${RESULTS[@]}"
  return "$STATUS"
}

# The functions step() runs, for the bash it starts under `timeout`.
export -f show_info run_benchmarks run_samples run_tests sanitizer line_buffered
export BUILD DATA GPU_CHECK_SAMPLE_ARGS TEST_BINS

case "${1:-}" in
  build)
    build
    ;;
  run)
    shift
    OUT="${OUT:-$BUILD/out}"
    mkdir -p "$OUT"
    export OUT
    cd "$ROOT" || exit 1
    run_checks "$@" 2>&1 | tee "$OUT/log.txt"
    exit "${PIPESTATUS[0]}"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage
    exit 2
    ;;
esac
