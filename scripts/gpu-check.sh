#!/usr/bin/env bash
# Builds ember for a lent GPU machine (here) and checks it there in one run of at most
# 8 minutes: `ember info`, every CUDA test suite in a process of its own, the samples' quick
# runs and compute-sanitizer memcheck; the benchmarks in a second run.
#
#   Here:   scripts/gpu-check.sh build
#     Configures and builds build-gpu/ (Release, sm_90 only, relative RPATHs), copies the
#     Fashion-MNIST .gz files into data/fashion-mnist/ and packs what runs there: the test and
#     sample programs, bin/ember, libember.so and the non-CUDA libraries they need in case
#     that machine lacks them into build-gpu/carry/ember-gpu.tar.xz, the benchmarks into
#     build-gpu/carry-bench/ember-bench.tar.xz. `pack [BUILD_DIR [DEST_DIR]]` packs an
#     already built tree alone (into DEST_DIR/carry*, default BUILD_DIR) and says its size.
#
#   There, through the device tool (docs/benchmarks.md has more):
#     run(command="scripts/gpu-check.sh run", carry=["build-gpu/carry", "data"], timeout_s=600)
#     run(command="scripts/gpu-check.sh bench", carry=["build-gpu/carry",
#         "build-gpu/carry-bench"], timeout_s=600)
#     Unpacks what came into build-gpu/, finds cuDNN and cuBLAS (in /usr/local/cuda or in
#     python3's site-packages/nvidia/*), and writes log.txt (tee'd as it goes) and
#     summary.json (rewritten after each step) to $OUT. `run STEP...` runs only some of:
#     info tests samples memcheck racecheck bench (default: info tests samples memcheck;
#     `bench` is `run info bench`, and the benchmarks' JSON files come back too).
#     Each step has a fixed share of the time and each process in it a cap of its own; the
#     shares of the steps asked for must add up to at most GPU_CHECK_LIMIT_S (480 s): this
#     is checked before anything runs (`budget STEP...` checks it alone).
#
#   Here, in CI: `rehearse BUILD_DIR` (tests/scripts/gpu_check_rehearsal.sh) packs an
#     already built tree, unpacks it in a temporary folder and runs there with fake CUDA
#     libraries and no GPU: everything up to the point where a GPU is needed.
#
#   Settings: GPU_CHECK_JOBS (build and xz jobs, default 1), GPU_CHECK_XZ (default -6),
#   GPU_CHECK_T_<SHARE> (seconds; SETUP 20, INFO 20, TESTS 240, SUITE 60 per suite,
#   SAMPLES 90, SAMPLE 30 per sample, MEMCHECK 90, MEMCHECK_SUITE 45, BENCH 400,
#   BENCH_ONE 150), GPU_CHECK_MEMCHECK_SUITES, GPU_CHECK_SAMPLE_ARGS (default --quick),
#   GPU_CHECK_GPU (auto, 0: none, 1: assume one), GPU_CHECK_BUILD (the build tree there,
#   default build-gpu/), GPU_CHECK_CUDA_DIRS (the toolkit's library folders),
#   FASHION_MNIST_SRC, OUT (default build-gpu/out).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${GPU_CHECK_BUILD:-$ROOT/build-gpu}"
PACK_NAME="ember-gpu.tar.xz"
BENCH_PACK_NAME="ember-bench.tar.xz"
DATA="$ROOT/data/fashion-mnist"
DATA_SRC="${FASHION_MNIST_SRC:-/usr/share/datasets/fashion-mnist}"
CARRY_LIMIT=$((64 * 1024 * 1024))
TEST_BINS=(ember_api_tests ember_internal_tests)
CUDA_DIRS="${GPU_CHECK_CUDA_DIRS:-/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib}"
# The CUDA libraries ember loads (NCCL too: the toolkit's, or PyTorch's pip nvidia/nccl),
# searched for and reported, never carried; cuDNN and cuBLAS first.
CUDA_LIBS=(libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10
  libnvrtc.so.13 libnccl.so.2)

# Note [Time budget]
# One device call may run 10 minutes, and the machine's start counts against the 15 lent:
# the check must end within 8. Each step gets a fixed share, each process in it a cap (a
# sticky CUDA error or a hang costs one suite its cap, not the run), and the shares of the
# steps asked for must add up to at most LIMIT, which budget_check asserts before anything
# runs. A step that used up its share marks what it did not reach "skipped: out of time".
LIMIT=${GPU_CHECK_LIMIT_S:-480}
T_SETUP=${GPU_CHECK_T_SETUP:-20}            # unpacking, the library search
T_INFO=${GPU_CHECK_T_INFO:-20}
T_TESTS=${GPU_CHECK_T_TESTS:-240}
T_SUITE=${GPU_CHECK_T_SUITE:-60}
T_SAMPLES=${GPU_CHECK_T_SAMPLES:-90}
T_SAMPLE=${GPU_CHECK_T_SAMPLE:-30}
T_MEMCHECK=${GPU_CHECK_T_MEMCHECK:-90}
T_MEMCHECK_SUITE=${GPU_CHECK_T_MEMCHECK_SUITE:-45}
T_BENCH=${GPU_CHECK_T_BENCH:-400}
T_BENCH_ONE=${GPU_CHECK_T_BENCH_ONE:-150}
# memcheck slows kernels 10-100x: hand-written kernels only (cuBLAS and cuDNN are NVIDIA's
# to check), the ones reading indices or reducing first, in this order, while the share lasts.
MEMCHECK_SUITES="${GPU_CHECK_MEMCHECK_SUITES:-CudaElementwise ReduceCuda SoftmaxCuda \
CrossEntropyCuda NllCuda Pool2dCuda PoolKernelsCuda LayerNormCuda BatchNormKernelsCuda \
DropoutCuda}"

usage() {
  sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- here ----------------------------------------------------------------------------------

# The shared libraries `bin...` load that are not ember, glibc or CUDA: the machine there
# may lack them (OpenBLAS above all). Prints "soname path" lines.
non_cuda_libs() {
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
    grep -Ev '^(libember\.|linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.)' |
    grep -Ev '^(librt\.|libresolv\.)' |
    grep -Ev '^lib(cuda|cudart|cublas|cublasLt|cudnn|curand|nvrtc|nvJitLink|nccl)[._]' || true
}

# pack BUILD_DIR DEST_DIR: what runs there, from a built tree, as two xz tarballs with paths
# relative to BUILD_DIR (unpacked into build-gpu/ there, whatever the folder here is called):
#   DEST_DIR/carry/ember-gpu.tar.xz          the test and sample programs, bin/ember,
#                                            libember.so and the non-CUDA libraries (the check)
#   DEST_DIR/carry-bench/ember-bench.tar.xz  the bench_* programs (their run only: each links
#                                            ember's objects with its own 7 MB of kernels)
# and checks that each run's carry fits in what a call may carry.
pack() {
  local build dest
  build=$(cd "$1" && pwd) || { echo "error: no build folder $1"; return 1; }
  dest=$2
  local bins=() benches=()
  mapfile -t bins < <(cd "$build" && find tests samples bin -maxdepth 1 -type f -perm -u=x \
    \( -name 'ember_*_tests' -o -path 'samples/*' -o -path bin/ember \) 2>/dev/null | sort)
  mapfile -t benches < <(cd "$build" && find benchmarks -maxdepth 1 -type f -perm -u=x \
    -name 'bench_*' 2>/dev/null | sort)
  if ((${#bins[@]} == 0)) || [[ ! -e "$build/libember.so" ]]; then
    echo "error: nothing to pack under $build (no test binaries or no libember.so)"
    return 1
  fi
  rm -rf "$dest/carry" "$dest/carry-bench" "$build/fallback-libs"
  mkdir -p "$dest/carry" "$build/fallback-libs" || return 1
  local soname path
  while read -r soname path; do
    cp -L "$path" "$build/fallback-libs/$soname" || return 1
  done < <(cd "$build" && non_cuda_libs "${bins[@]}" "${benches[@]}" libember.so)
  local xz="${GPU_CHECK_XZ:--6} -T${GPU_CHECK_JOBS:-1}"
  echo "packing from $build: ${bins[*]} libember.so fallback-libs/{$(cd \
    "$build/fallback-libs" && echo *)} (xz $xz)"
  (cd "$build" && XZ_OPT="$xz" tar -cJf "$dest/carry/$PACK_NAME" "${bins[@]}" libember.so* \
    fallback-libs) || return 1
  local check_bytes bench_bytes=0 data_bytes=0 tree_bytes
  if ((${#benches[@]})); then
    echo "packing from $build: ${benches[*]}"
    mkdir -p "$dest/carry-bench"
    (cd "$build" && XZ_OPT="$xz" tar -cJf "$dest/carry-bench/$BENCH_PACK_NAME" \
      "${benches[@]}") || return 1
    bench_bytes=$(stat -c %s "$dest/carry-bench/$BENCH_PACK_NAME")
  fi

  # What travels: the tracked tree and, for the check, the carry and the data; for the
  # benchmarks, the carry and the benchmarks' carry.
  check_bytes=$(stat -c %s "$dest/carry/$PACK_NAME")
  [[ -d "$DATA_SRC" ]] && data_bytes=$(cat "$DATA_SRC"/*.gz 2>/dev/null | wc -c)
  tree_bytes=$(cd "$ROOT" && git ls-files -z 2>/dev/null | xargs -0 cat 2>/dev/null | wc -c)
  local check_total=$((check_bytes + data_bytes + tree_bytes))
  local bench_total=$((check_bytes + bench_bytes + tree_bytes))
  echo "packed: carry/$PACK_NAME $check_bytes bytes, carry-bench/$BENCH_PACK_NAME" \
    "$bench_bytes bytes"
  echo "carried by the check: $check_total bytes (carry, data $data_bytes, tree $tree_bytes);" \
    "by the benchmarks: $bench_total bytes; a call may carry $CARRY_LIMIT"
  if ((check_total > CARRY_LIMIT || bench_total > CARRY_LIMIT)); then
    echo "error: over the 64 MiB a call may carry"
    return 1
  fi
}

build() {
  cd "$ROOT" || exit 1
  local p
  for p in build-gpu data; do
    git check-ignore -q "$p" ||
      echo "warning: $p/ is not git-ignored: it would travel with the tree"
  done
  cmake -S "$ROOT" -B "$ROOT/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
    -DEMBER_BUILD_TESTS=ON -DEMBER_BUILD_SAMPLES=ON -DEMBER_BUILD_BENCHMARKS=ON || exit 1
  # One job by default: the machine that builds is shared.
  cmake --build "$ROOT/build-gpu" -j "${GPU_CHECK_JOBS:-1}" || exit 1
  mkdir -p "$DATA"
  cp -u "$DATA_SRC"/*.gz "$DATA"/ || exit 1
  pack "$ROOT/build-gpu" "$ROOT/build-gpu" || exit 1
  echo 'next, through the device tool: run(command="scripts/gpu-check.sh run",' \
    'carry=["build-gpu/carry", "data"], timeout_s=600), then' \
    'run(command="scripts/gpu-check.sh bench", carry=["build-gpu/carry",' \
    '"build-gpu/carry-bench"], timeout_s=600)'
}

# --- the budget ----------------------------------------------------------------------------

# budget_check STEP...: the shares of these steps and the setup add up to at most LIMIT,
# and no cap is over its step's share. Prints the sum; fails naming what is over.
budget_check() {
  local sum=$T_SETUP s share caps=()
  for s in "$@"; do
    case "$s" in
      info) share=$T_INFO ;;
      tests) share=$T_TESTS caps=(SUITE "$T_SUITE") ;;
      samples) share=$T_SAMPLES caps=(SAMPLE "$T_SAMPLE") ;;
      memcheck | racecheck) share=$T_MEMCHECK caps=(MEMCHECK_SUITE "$T_MEMCHECK_SUITE") ;;
      bench) share=$T_BENCH caps=(BENCH_ONE "$T_BENCH_ONE") ;;
      *) echo "budget: unknown step '$s'"; return 2 ;;
    esac
    if ((${#caps[@]} && caps[1] > share)); then
      echo "budget: error: the cap GPU_CHECK_T_${caps[0]}=${caps[1]}s is over the $s share" \
        "(${share}s)"
      return 1
    fi
    caps=()
    sum=$((sum + share))
  done
  BUDGET_SUM=$sum
  echo "budget: setup ${T_SETUP}s + shares of [$*] = ${sum}s of ${LIMIT}s"
  if ((sum > LIMIT)); then
    echo "budget: error: ${sum}s is over the ${LIMIT}s one run may take"
    return 1
  fi
}

# --- JSON, written by hand: the summary must come out even where python3 is broken --------

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')
  printf '"%s"' "$s"
}

# json_list ITEM...: ITEMs are JSON already.
json_list() {
  local IFS=,
  printf '[%s]' "$*"
}

# --- there ---------------------------------------------------------------------------------

now() { echo "${EPOCHREALTIME/./}"; }                # microseconds
secs_since() { local d=$(($(now) - $1)); printf '%d.%01d' $((d / 1000000)) $((d / 100000 % 10)); }

GPU_PRESENT=0
GPU_NAME=""
STATUS=0
STEP_JSON=()     # one object per step, in order
LIB_JSON=()
NOTES=()
MODE=run
STARTED=""

write_summary() {
  local final=${1:-0} status
  if ((final)); then
    ((STATUS == 0)) && status=ok || status=failed
  else
    status=incomplete
  fi
  local notes=() n
  for n in "${NOTES[@]}"; do notes+=("$(json_str "$n")"); done
  {
    printf '{\n  "mode": %s,\n  "status": %s,\n' "$(json_str "$MODE")" "$(json_str "$status")"
    printf '  "started_utc": %s,\n  "host": %s,\n' "$(json_str "$STARTED")" \
      "$(json_str "$(hostname 2>/dev/null)")"
    printf '  "gpu": {"present": %s, "name": %s},\n' \
      "$( ((GPU_PRESENT)) && echo true || echo false)" "$(json_str "$GPU_NAME")"
    printf '  "budget": {"limit_s": %d, "setup_s": %d, "steps_s": %d},\n' "$LIMIT" "$T_SETUP" \
      "$BUDGET_SUM"
    printf '  "ld_library_path": %s,\n' "$(json_str "${LD_LIBRARY_PATH:-}")"
    printf '  "libraries": %s,\n' "$(json_list "${LIB_JSON[@]}")"
    printf '  "notes": %s,\n' "$(json_list "${notes[@]}")"
    printf '  "steps": [\n'
    local i
    for ((i = 0; i < ${#STEP_JSON[@]}; i++)); do
      printf '    %s%s\n' "${STEP_JSON[i]}" "$( ((i + 1 < ${#STEP_JSON[@]})) && echo ,)"
    done
    printf '  ]\n}\n'
  } >"$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
}

# add_step NAME STATUS LIMIT SECONDS [EXTRA_JSON_FIELDS]
add_step() {
  local obj
  obj=$(printf '{"name": %s, "status": %s, "limit_s": %s, "seconds": %s%s}' \
    "$(json_str "$1")" "$(json_str "$2")" "$3" "$4" "${5:+, $5}")
  STEP_JSON+=("$obj")
  case "$2" in ok | "skipped: no GPU") ;; *) STATUS=1 ;; esac
  echo "== $1: $2 (${4}s of ${3}s)"
  write_summary
}

detect_gpu() {
  case "${GPU_CHECK_GPU:-auto}" in
    0) GPU_PRESENT=0 ;;
    1) GPU_PRESENT=1 GPU_NAME="(assumed: GPU_CHECK_GPU=1)" ;;
    *)
      local names
      names=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)
      if [[ -n "$names" ]]; then
        GPU_PRESENT=1
        GPU_NAME=$(paste -sd ';' <<<"$names")
      fi ;;
  esac
  echo "GPU: $( ((GPU_PRESENT)) && echo "$GPU_NAME" || echo none)"
}

# run_capped CAP LOGFILE CMD...: CMD under `timeout`, its output to the log and LOGFILE,
# line-buffered so a process killed at its cap has printed what it did. Sets RC and TOOK.
RC=0
TOOK=0
run_capped() {
  local cap=$1 file=$2 start
  shift 2
  start=$(now)
  local buf=()
  command -v stdbuf >/dev/null && buf=(stdbuf -oL -eL)
  timeout --kill-after=5 "$cap" "${buf[@]}" "$@" 2>&1 | tee "$file"
  RC=${PIPESTATUS[0]}
  TOOK=$(secs_since "$start")
}

# How a capped process ended, from RC, TOOK and its cap: "" (exit 0), "exit N",
# "timed out", or "signal SIG".
ending() {
  local cap=$1
  if ((RC == 0)); then
    echo ""
  elif ((RC == 124)) || { ((RC == 137)) && ((${TOOK%.*} >= cap)); }; then
    echo "timed out"
  elif ((RC > 128)); then
    echo "signal $(kill -l $((RC - 128)) 2>/dev/null || echo $((RC - 128)))"
  else
    echo "exit $RC"
  fi
}

# share_left END: seconds left until END (a `now` value), at least 0.
share_left() { local l=$((($1 - $(now)) / 1000000)); echo $((l > 0 ? l : 0)); }

# unpack NEEDS_TESTS NEEDS_BENCH: the packs that came, into build-gpu/.
unpack() {
  local pack found=0
  for pack in "$BUILD/carry/$PACK_NAME" "$BUILD/carry-bench/$BENCH_PACK_NAME"; do
    [[ -f "$pack" ]] || continue
    found=1
    echo "unpacking $pack into $BUILD"
    # tar needs xz for .xz; python3's tarfile does not.
    timeout "$T_SETUP" tar -C "$BUILD" -xJf "$pack" 2>/dev/null ||
      timeout "$T_SETUP" python3 -m tarfile -e "$pack" "$BUILD" || return 1
  done
  ((found)) || echo "no pack in $BUILD/carry*: using $BUILD as it is"
  local t
  for t in "${TEST_BINS[@]}"; do
    [[ $1 == 0 || -x "$BUILD/tests/$t" ]] || {
      echo "error: no $BUILD/tests/$t; run 'scripts/gpu-check.sh build' here and carry" \
        "build-gpu/carry and data"
      return 1
    }
  done
  if [[ $2 == 1 ]] && ! compgen -G "$BUILD/benchmarks/bench_*" >/dev/null; then
    echo "error: no $BUILD/benchmarks/bench_*: carry build-gpu/carry-bench too"
    return 1
  fi
  return 0
}

# The folders that may hold NVIDIA's pip wheels: python3's site-packages (asked of
# python3 without importing anything: torch would take seconds).
site_dirs() {
  timeout 10 python3 -c 'import site
for d in site.getsitepackages() + [site.getusersitepackages()]: print(d)' 2>/dev/null
}

# lib_version PATH SITE: the version of the library at PATH: from the pip wheel whose
# RECORD lists it, else from the name of the file its links end at (libcudnn.so.9.10.2).
lib_version() {
  local path=$1 site=$2 rec rel name real
  if [[ -n "$site" ]]; then
    rel=${path#"$site"/}
    rec=$(grep -l -F "$rel," "$site"/*.dist-info/RECORD 2>/dev/null | head -n 1)
    if [[ -n "$rec" ]]; then
      name=$(basename "$(dirname "$rec")" .dist-info)
      echo "${name##*-} (pip ${name%-*})"
      return
    fi
  fi
  real=$(basename "$(readlink -f "$path")")
  name=$(basename "$path")
  if [[ "$real" == "$name".* ]]; then echo "${real#*.so.}"; else echo unknown; fi
}

# LD_LIBRARY_PATH: the unpacked build first (its libember.so, whatever RUNPATH the binaries
# were linked with), a folder for each CUDA library found, then links to the fallback
# libraries for what else is missing (links for the missing ones only, so that nothing the
# machine has is shadowed).
setup_libraries() {
  local sites=() dirs=("$BUILD") soname found source site d version
  mapfile -t sites < <(site_dirs)
  echo "python3 site-packages: ${sites[*]:-(none: no python3)}"
  for soname in "${CUDA_LIBS[@]}"; do
    found="" source="" site=""
    for d in $CUDA_DIRS; do
      [[ -e "$d/$soname" ]] && { found="$d/$soname" source=cuda; break; }
    done
    if [[ -z "$found" ]]; then
      for site in "${sites[@]}"; do
        found=$(find -L "$site/nvidia" -maxdepth 3 -name "$soname" 2>/dev/null | sort | head -n 1)
        [[ -n "$found" ]] && { source=pip; break; }
      done
    fi
    if [[ -n "$found" ]]; then
      version=$(lib_version "$found" "$([[ $source == pip ]] && echo "$site")")
      echo "$soname: $found ($source, version $version)"
      dirs+=("$(dirname "$found")")
      LIB_JSON+=("$(printf '{"name": %s, "found": true, "path": %s, "source": %s, "version": %s}' \
        "$(json_str "$soname")" "$(json_str "$found")" "$(json_str "$source")" \
        "$(json_str "$version")")")
    else
      echo "$soname: not found in $CUDA_DIRS or site-packages/nvidia"
      LIB_JSON+=("$(printf '{"name": %s, "found": false}' "$(json_str "$soname")")")
    fi
  done
  local path=""
  for d in "${dirs[@]}"; do
    [[ ":$path:" == *":$d:"* ]] || path="${path:+$path:}$d"
  done
  local fallback="${TMPDIR:-/tmp}/ember-fallback-libs.$$"
  rm -rf "$fallback" && mkdir -p "$fallback"
  export LD_LIBRARY_PATH="${path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$fallback"
  local bins=() missing round
  mapfile -t bins < <(find "$BUILD/tests" "$BUILD/samples" "$BUILD/benchmarks" "$BUILD/bin" \
    -maxdepth 1 -type f -perm -u=x 2>/dev/null)
  # A library found only now can need others (OpenBLAS needs libgfortran): a few rounds.
  for round in 1 2 3; do
    mapfile -t missing < <(ldd "${bins[@]}" "$BUILD"/libember.so 2>/dev/null |
      awk '/not found/ { print $1 }' | sort -u)
    ((${#missing[@]})) || break
    for soname in "${missing[@]}"; do
      if [[ -f "$BUILD/fallback-libs/$soname" ]]; then
        ln -sf "$BUILD/fallback-libs/$soname" "$fallback/$soname"
        echo "$soname: not on this machine, using the one built against (round $round)"
      fi
    done
  done
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local ember_lib
  ember_lib=$(ldd "$BUILD/tests/ember_api_tests" 2>/dev/null | awk '/libember/ { print $3 }')
  echo "libember: ${ember_lib:-not linked (not an ELF program?)}"
  mapfile -t missing < <(ldd "${bins[@]}" "$BUILD"/libember.so 2>/dev/null |
    awk '/not found/ { print $1 }' | sort -u)
  if ((${#missing[@]})); then
    echo "error: libraries still missing: ${missing[*]}"
    NOTES+=("libraries missing: ${missing[*]}")
    STATUS=1
  fi
}

# --- the steps -----------------------------------------------------------------------------

step_info() {
  local start end log rc=0 ending_=""
  start=$(now)
  end=$((start + T_INFO * 1000000))
  log=$(mktemp)
  if ((GPU_PRESENT)) && command -v nvidia-smi >/dev/null; then
    run_capped "$(share_left "$end")" "$log" nvidia-smi \
      --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  fi
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  # `ember info` says which cuDNN and cuBLAS it loaded: without a GPU too.
  run_capped "$(share_left "$end")" "$log" "$BUILD/bin/ember" info
  ending_=$(ending "$(share_left "$end")")
  local status=ok
  [[ -n "$ending_" ]] && status="failed: ember info $ending_"
  [[ -x "$BUILD/bin/ember" ]] || status="failed: no bin/ember"
  add_step info "$status" "$T_INFO" "$(secs_since "$start")" \
    "\"ember_info\": $(json_str "$(head -c 4000 "$log")")"
  rm -f "$log"
}

# SUITES: "binary<TAB>suite<TAB>gtest filter" for each CUDA suite of each test binary: a
# suite whose name says CUDA or GPU runs whole; of the others, the tests whose names do.
# Without CUDA (a libember.so that loads no libcudart) there is none: the CPU build's GPU
# tests only skip.
SUITES=()
list_cuda_suites() {
  SUITES=()
  local t list line suite test
  local -A tests=()
  local order=()
  local deps
  if deps=$(ldd "$BUILD/libember.so" 2>/dev/null) && ! grep -q 'libcudart\.' <<<"$deps"; then
    echo "no CUDA test suites: libember.so loads no libcudart (built without CUDA)"
    NOTES+=("no CUDA test suites: built without CUDA (libember.so loads no libcudart)")
    return
  fi
  for t in "${TEST_BINS[@]}"; do
    # stdout only: the loader's warnings on stderr are no suites.
    list=$(timeout 30 "$BUILD/tests/$t" --gtest_list_tests 2>"$OUT/.list-errors") || {
      echo "error: $t --gtest_list_tests failed:"
      tail -n 5 "$OUT/.list-errors"
      NOTES+=("$t --gtest_list_tests failed: $(tail -n 1 "$OUT/.list-errors")")
      STATUS=1
      continue
    }
    tests=() order=() suite=""
    while IFS= read -r line; do
      line=${line%%  #*}
      line=${line%%[[:space:]]}
      [[ -z "$line" ]] && continue
      if [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_/]*\.$ ]]; then
        suite=${line%.}
        if [[ "$suite" =~ [Cc]uda|CUDA|[Gg]pu|GPU ]]; then
          tests[$suite]="$suite.*"
          order+=("$suite")
        fi
      elif [[ "$line" =~ ^\ \ [A-Za-z_][A-Za-z0-9_/]*$ ]]; then
        test=${line##* }
        [[ -n "$suite" && "${tests[$suite]:-}" != "$suite.*" ]] || continue
        if [[ "$test" =~ [Cc]uda|CUDA|[Gg]pu|GPU ]]; then
          [[ -n "${tests[$suite]:-}" ]] || order+=("$suite")
          tests[$suite]="${tests[$suite]:+${tests[$suite]}:}$suite.$test"
        fi
      fi
    done <<<"$list"
    for suite in "${order[@]}"; do
      SUITES+=("$t"$'\t'"$suite"$'\t'"${tests[$suite]}")
    done
  done
  rm -f "$OUT/.list-errors"
  echo "CUDA test suites: ${#SUITES[@]}"
  if ((${#SUITES[@]} == 0)); then
    echo "no CUDA test suites: the binaries were built without CUDA (EMBER_CUDA=OFF)?"
    NOTES+=("no CUDA test suites in ${TEST_BINS[*]}: built without CUDA?")
  fi
}

# count_of LOG TAG: N from GoogleTest's "[  TAG  ] N tests" summary line (0 when absent).
count_of() {
  grep -E "^\[ *$2 *\] [0-9]+ tests?[,.]" "$1" | tail -n 1 | sed -E 's/^\[[^]]*\] ([0-9]+).*/\1/' |
    grep . || echo 0
}

# run_suites STEP SHARE CAP [SANITIZER...]: each suite of SELECTED in a process of its own.
SELECTED=()
run_suites() {
  local name=$1 share=$2 cap=$3
  shift 3
  local wrapper=("$@")
  local start end items=() entry bin suite filter log limit left how status passed
  start=$(now)
  end=$((start + share * 1000000))
  log=$(mktemp)
  for entry in "${SELECTED[@]}"; do
    IFS=$'\t' read -r bin suite filter <<<"$entry"
    left=$(share_left "$end")
    limit=$((cap < left ? cap : left))
    if ((!GPU_PRESENT)); then
      status="skipped: no GPU"
      items+=("$(printf '{"binary": %s, "suite": %s, "filter": %s, "status": %s}' \
        "$(json_str "$bin")" "$(json_str "$suite")" "$(json_str "$filter")" \
        "$(json_str "$status")")")
      continue
    fi
    if ((limit < (cap < 5 ? cap : 5))); then
      items+=("$(printf '{"binary": %s, "suite": %s, "status": "skipped: out of time"}' \
        "$(json_str "$bin")" "$(json_str "$suite")")")
      STATUS=1
      continue
    fi
    echo "-- $name $bin $suite (cap ${limit}s)"
    run_capped "$limit" "$log" "${wrapper[@]}" "$BUILD/tests/$bin" --gtest_filter="$filter" \
      --gtest_color=no
    how=$(ending "$limit")
    passed=false
    grep -q '^\[  PASSED  \]' "$log" && passed=true
    if ((${#wrapper[@]})) && grep -q 'ERROR SUMMARY: [1-9]' "$log"; then
      status="sanitizer errors: $(grep -o 'ERROR SUMMARY: [0-9]* errors\?' "$log" | tail -n 1)"
    elif [[ -z "$how" && $passed == true ]]; then
      status=passed
    elif [[ $passed == true ]]; then
      status="crashed after PASSED: $how"
    elif [[ "$how" == "timed out" ]]; then
      status="timed out"
    elif [[ "$how" == signal* ]]; then
      status="crashed: $how"
    else
      status="failed: ${how:-no PASSED line}"
    fi
    [[ $status == passed ]] || STATUS=1
    echo "-- $bin $suite: $status (${TOOK}s)"
    local fields=('"binary": %s' '"suite": %s' '"filter": %s' '"status": %s' '"exit_code": %d'
      '"ending": %s' '"passed_line": %s' '"seconds": %s' '"tests_passed": %d'
      '"tests_failed": %d' '"tests_skipped": %d')
    items+=("$(IFS=,; printf "{${fields[*]}}" \
      "$(json_str "$bin")" "$(json_str "$suite")" "$(json_str "$filter")" \
      "$(json_str "$status")" "$RC" "$(json_str "${how:-exit 0}")" "$passed" "$TOOK" \
      "$(count_of "$log" PASSED)" "$(count_of "$log" FAILED)" "$(count_of "$log" SKIPPED)")")
  done
  rm -f "$log"
  local step_status=ok
  if ((!GPU_PRESENT)); then
    step_status="skipped: no GPU"
  else
    local i
    for i in "${items[@]}"; do
      [[ "$i" == *'"status": "passed"'* ]] || { step_status=failed; break; }
    done
  fi
  add_step "$name" "$step_status" "$share" "$(secs_since "$start")" \
    "\"cap_s\": $cap, \"suites\": $(json_list "${items[@]}")"
}

step_tests() {
  SELECTED=("${SUITES[@]}")
  run_suites tests "$T_TESTS" "$T_SUITE"
}

step_sanitizer() {
  local tool=$1 cs="" c s e
  cs=$(command -v compute-sanitizer || true)
  for c in /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [[ -z "$cs" && -x "$c" ]] && cs=$c
  done
  SELECTED=()
  for s in $MEMCHECK_SUITES; do
    for e in "${SUITES[@]}"; do
      [[ "$(cut -f2 <<<"$e")" == "$s" ]] && SELECTED+=("$e")
    done
  done
  if ((GPU_PRESENT)) && [[ -z "$cs" ]]; then
    add_step "$tool" "failed: compute-sanitizer not found" "$T_MEMCHECK" 0
    return
  fi
  run_suites "$tool" "$T_MEMCHECK" "$T_MEMCHECK_SUITE" "$cs" --tool "$tool" \
    --error-exitcode 99 --print-limit 20
}

# Each sample on the GPU (--device cuda: a sample that cannot use it fails instead of
# training on the CPU) with --quick, which must print that the loss fell and an accuracy.
step_samples() {
  local start end log items=() s args=() runs=() run left limit how status learned acc
  start=$(now)
  end=$((start + T_SAMPLES * 1000000))
  log=$(mktemp)
  read -r -a args <<<"${GPU_CHECK_SAMPLE_ARGS:---quick}"
  for s in "$BUILD"/samples/*; do
    [[ -f "$s" && -x "$s" ]] && runs+=("$(basename "$s")")
  done
  [[ -x "$BUILD/samples/fashion_mlp" ]] && runs+=("fashion_mlp --trainer")
  for run in "${runs[@]}"; do
    local cmd=()
    read -r -a cmd <<<"$run"
    cmd=("$BUILD/samples/${cmd[0]}" "${cmd[@]:1}" --data "$DATA" --device cuda "${args[@]}")
    if ((!GPU_PRESENT)); then
      items+=("$(printf '{"sample": %s, "status": "skipped: no GPU"}' "$(json_str "$run")")")
      continue
    fi
    left=$(share_left "$end")
    limit=$((T_SAMPLE < left ? T_SAMPLE : left))
    if ((limit < (T_SAMPLE < 5 ? T_SAMPLE : 5))); then
      items+=("$(printf '{"sample": %s, "status": "skipped: out of time"}' "$(json_str "$run")")")
      STATUS=1
      continue
    fi
    echo "-- ${cmd[*]#"$BUILD/"} (cap ${limit}s)"
    run_capped "$limit" "$log" "${cmd[@]}"
    how=$(ending "$limit")
    learned=false
    tr '\n' ' ' <"$log" | grep -qE 'the loss fell: .*test accuracy: ([4-9][0-9]|100)\.' &&
      learned=true
    acc=$(grep -oE 'test accuracy: [0-9.]+%' "$log" | tail -n 1)
    if [[ -z "$how" && $learned == true ]]; then status=passed
    elif [[ -z "$how" ]]; then status="failed: did not learn (${acc:-no accuracy line})"
    else status="failed: $how"; fi
    [[ $status == passed ]] || STATUS=1
    items+=("$(printf '{"sample": %s, "status": %s, "exit_code": %d, "seconds": %s, %s}' \
      "$(json_str "$run")" "$(json_str "$status")" "$RC" "$TOOK" \
      "\"accuracy\": $(json_str "${acc#test accuracy: }")")")
  done
  rm -f "$log"
  local step_status=ok i
  if ((!GPU_PRESENT)); then step_status="skipped: no GPU"; fi
  for i in "${items[@]}"; do
    [[ "$i" == *'"status": "passed"'* || "$i" == *'no GPU'* ]] || step_status=failed
  done
  add_step samples "$step_status" "$T_SAMPLES" "$(secs_since "$start")" \
    "\"args\": $(json_str "${args[*]}"), \"cap_s\": $T_SAMPLE, \"runs\": $(json_list "${items[@]}")"
}

step_bench() {
  local start end log items=() b name left limit how status
  start=$(now)
  end=$((start + T_BENCH * 1000000))
  log=$(mktemp)
  for b in "$BUILD"/benchmarks/bench_*; do
    [[ -x "$b" ]] || continue
    name=$(basename "$b")
    left=$(share_left "$end")
    limit=$((T_BENCH_ONE < left ? T_BENCH_ONE : left))
    if ((!GPU_PRESENT)); then
      status="skipped: no GPU"
    elif ((limit < (T_BENCH_ONE < 5 ? T_BENCH_ONE : 5))); then
      status="skipped: out of time"
    else
      echo "-- $name (cap ${limit}s)"
      run_capped "$limit" "$log" "$b" --json "$OUT/$name.json"
      how=$(ending "$limit")
      status=${how:+failed: $how}
      status=${status:-ok}
    fi
    [[ $status == ok || $status == "skipped: no GPU" ]] || STATUS=1
    items+=("$(printf '{"benchmark": %s, "status": %s}' "$(json_str "$name")" \
      "$(json_str "$status")")")
  done
  rm -f "$log"
  local step_status=ok i
  ((GPU_PRESENT)) || step_status="skipped: no GPU"
  for i in "${items[@]}"; do
    [[ "$i" == *'"status": "ok"'* || "$i" == *'no GPU'* ]] || step_status=failed
  done
  ((${#items[@]})) || { ((GPU_PRESENT)) && step_status="failed: no bench_* programs"; }
  add_step bench "$step_status" "$T_BENCH" "$(secs_since "$start")" \
    "\"cap_s\": $T_BENCH_ONE, \"benchmarks\": $(json_list "${items[@]}")"
}

BUDGET_SUM=0
run_checks() {
  local steps=("$@")
  ((${#steps[@]})) || steps=(info tests samples memcheck)
  STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  echo "gpu-check $MODE: $STARTED on $(hostname), steps: ${steps[*]}"
  budget_check "${steps[@]}" || return 2
  ulimit -c 0  # a crashing test leaves no core file on the machine's disk
  write_summary
  detect_gpu
  local setup_start
  setup_start=$(now)
  local needs_tests=0 needs_bench=0 s
  for s in "${steps[@]}"; do
    [[ $s == tests || $s == memcheck || $s == racecheck ]] && needs_tests=1
    [[ $s == bench ]] && needs_bench=1
  done
  unpack "$needs_tests" "$needs_bench" ||
    { NOTES+=("unpacking failed (log.txt)"); STATUS=1; write_summary 1; return 1; }
  setup_libraries
  export EMBER_FASHION_MNIST="$DATA"
  # The tests look for the data where this project's build machine keeps it (on a real
  # GPU machine only: a rehearsal leaves the machine it runs on as it was).
  if ((GPU_PRESENT)) && [[ ${GPU_CHECK_GPU:-auto} == auto &&
    ! -e /usr/share/datasets/fashion-mnist && -w /usr/share ]]; then
    mkdir -p /usr/share/datasets && ln -s "$DATA" /usr/share/datasets/fashion-mnist
  fi
  ((needs_tests)) && list_cuda_suites
  add_step setup "$([[ $STATUS == 0 ]] && echo ok || echo failed)" "$T_SETUP" \
    "$(secs_since "$setup_start")"
  for s in "${steps[@]}"; do
    case "$s" in
      info) step_info ;;
      tests) step_tests ;;
      samples) step_samples ;;
      memcheck | racecheck) step_sanitizer "$s" ;;
      bench) step_bench ;;
    esac
  done

  # At most 8 files come back from $OUT: past that, the benchmarks' JSON go in one archive.
  if (($(find "$OUT" -type f | wc -l) > 8)); then
    (cd "$OUT" && tar -czf results-json.tar.gz bench_*.json && rm -f bench_*.json)
    echo "more than 8 files: the benchmarks' JSON files are in results-json.tar.gz"
  fi
  write_summary 1
  echo
  echo "== summary ($OUT/summary.json)"
  local e
  for e in "${STEP_JSON[@]}"; do
    sed -E 's/^\{"name": "([^"]*)", "status": "([^"]*)".*/\1: \2/' <<<"$e"
  done
  return "$STATUS"
}

case "${1:-}" in
  build)
    build
    ;;
  pack)
    pack "${2:-$ROOT/build-gpu}" "${3:-${2:-$ROOT/build-gpu}}"
    ;;
  budget)
    shift
    ((${#@})) || set -- info tests samples memcheck
    budget_check "$@"
    ;;
  run | bench)
    MODE=$1
    shift
    [[ $MODE == bench ]] && set -- info bench
    OUT="${OUT:-$BUILD/out}"
    mkdir -p "$OUT" || exit 1
    export OUT
    cd "$ROOT" || exit 1
    run_checks "$@" 2>&1 | tee "$OUT/log.txt"
    exit "${PIPESTATUS[0]}"
    ;;
  rehearse)
    shift
    exec bash "$ROOT/tests/scripts/gpu_check_rehearsal.sh" "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage
    exit 2
    ;;
esac
