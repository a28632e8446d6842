#!/usr/bin/env bash
# Rehearses scripts/gpu-check.sh in CI, up to where a GPU is needed (CTest gpu_check.rehearsal):
#   tests/scripts/gpu_check_rehearsal.sh BUILD_DIR
# 1. the time budget: the default steps fit in 8 minutes, and a share or a cap too long fails;
# 2. the packing of BUILD_DIR (built already, CUDA or not): what is in it, its size (printed)
#    and that it travels within 64 MiB with the data and the tree;
# 3. a machine in a temporary folder: the script and the carry unpacked there, fake CUDA
#    libraries (a toolkit folder, and a pip layout site-packages/nvidia/*/lib with RECORD
#    files) found through a fake python3, no GPU: summary.json and log.txt checked;
# 4. the same for `bench`;
# 5. with fake GoogleTest binaries and a GPU assumed: the per-suite processes and how each
#    ended (passed, failed, timed out, crashed after PASSED, sanitizer errors), the samples'
#    check that they learned.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT="$SRC/scripts/gpu-check.sh"
[[ $# -eq 1 && -d "$1" ]] || { echo "usage: $0 BUILD_DIR (a built ember tree)"; exit 2; }
BUILD="$(cd "$1" && pwd)"
# The real python3, for reading the JSON: the fake one goes first on PATH below.
PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || { echo "gpu_check_rehearsal: python3 is needed to check the JSON"; exit 1; }
TMP="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-rehearsal.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# A GPU on the machine running CI must not change what is rehearsed.
export GPU_CHECK_GPU=0
# The run's links to fallback libraries go in a folder of TMPDIR: this one, removed at exit.
export TMPDIR="$TMP"
# xz on two threads: the rehearsal must stay well under CTest's limit (a CUDA build packs
# about 150 MB); the size differs from one thread's by a few percent.
export GPU_CHECK_JOBS="${GPU_CHECK_JOBS:-2}"
unset OUT GPU_CHECK_BUILD GPU_CHECK_CUDA_DIRS

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# json_check FILE PYTHON: runs PYTHON with `s` the parsed FILE; an assert that fails says why.
json_check() {
  "$PY" - "$1" "$2" <<'EOF' || fail "summary check: $1"
import json, sys
s = json.load(open(sys.argv[1]))
exec(sys.argv[2])
EOF
}

# --- 1. the budget ---------------------------------------------------------------------------
bash "$SCRIPT" budget | tee "$TMP/budget.txt"
grep -q '= 460s of 480s' "$TMP/budget.txt" || fail "the default run's shares are not 460 s"
bash "$SCRIPT" budget info bench >/dev/null || fail "the bench run is over its budget"
GPU_CHECK_T_TESTS=400 bash "$SCRIPT" budget >"$TMP/over.txt" &&
  fail "a 400 s tests share passed the budget check"
grep -q 'over the 480s' "$TMP/over.txt" || fail "no 'over' message: $(cat "$TMP/over.txt")"
GPU_CHECK_T_SUITE=300 bash "$SCRIPT" budget >/dev/null &&
  fail "a suite cap over the tests share passed the budget check"
bash "$SCRIPT" budget info tests samples memcheck bench >/dev/null &&
  fail "every step with the benchmarks passed the budget check"
mkdir -p "$TMP/over-out"
OUT="$TMP/over-out" GPU_CHECK_T_TESTS=400 bash "$SCRIPT" run >/dev/null &&
  fail "run went on over the budget"
grep -q 'budget: error' "$TMP/over-out/log.txt" || fail "run over budget: no error in log.txt"
ok "budget: 460 s of 480 s asserted; too long a share or cap is refused before anything runs"

# --- 2. the packing --------------------------------------------------------------------------
M="$TMP/machine"
mkdir -p "$M/scripts" "$M/data/fashion-mnist"
start=$SECONDS
bash "$SCRIPT" pack "$BUILD" "$M/build-gpu" | tee "$TMP/pack.txt" ||
  fail "packing $BUILD"
PACK="$M/build-gpu/carry/ember-gpu.tar.xz"
bytes=$(stat -c %s "$PACK")
tar -tJf "$PACK" >"$TMP/contents.txt"
for f in tests/ember_api_tests tests/ember_internal_tests bin/ember libember.so; do
  grep -qx "$f" "$TMP/contents.txt" || fail "$f is not in the pack"
done
if [[ -d "$BUILD/samples" ]] && ls "$BUILD"/samples/fashion_mlp >/dev/null 2>&1; then
  grep -qx samples/fashion_mlp "$TMP/contents.txt" || fail "the samples are not in the pack"
fi
((bytes < 64 * 1024 * 1024)) || fail "the pack is $bytes bytes"
echo "packed size: $bytes bytes ($((bytes / 1024)) KiB), xz, in $((SECONDS - start)) s," \
  "$(wc -l <"$TMP/contents.txt") entries"
if compgen -G "$BUILD/benchmarks/bench_*" >/dev/null; then
  [[ -f "$M/build-gpu/carry-bench/ember-bench.tar.xz" ]] || fail "no pack of the benchmarks"
  tar -tJf "$M/build-gpu/carry-bench/ember-bench.tar.xz" >"$TMP/bench-contents.txt"
  grep -q '^benchmarks/bench_' "$TMP/bench-contents.txt" ||
    fail "the benchmarks' pack holds no bench_*"
fi
ok "pack: $(grep '^carried by' "$TMP/pack.txt")"

# --- 3. the machine: unpacked in a temporary folder, fake CUDA libraries, no GPU -----------
cp "$SCRIPT" "$M/scripts/"
for f in "${FASHION_MNIST_SRC:-/usr/share/datasets/fashion-mnist}"/*.gz; do
  [[ -e "$f" ]] && ln -s "$f" "$M/data/fashion-mnist/"
done
# fake_lib PATH [SONAME]: a library the build really loads is linked to the real file (the
# loader must be able to read it); one it does not load is an empty file.
fake_lib() {
  local real
  real=$(ldd "$BUILD/libember.so" "$BUILD/bin/ember" 2>/dev/null |
    awk -v n="${2:-$(basename "$1")}" '$1 == n && $3 ~ /^\// { print $3; exit }')
  mkdir -p "$(dirname "$1")"
  if [[ -n "$real" ]]; then ln -s "$real" "$1"; else : >"$1"; fi
}
SITE="$TMP/py/site-packages"
fake_lib "$SITE/nvidia/cudnn/lib/libcudnn.so.9"
fake_lib "$SITE/nvidia/cublas/lib/libcublas.so.13"
fake_lib "$SITE/nvidia/cublas/lib/libcublasLt.so.13"
mkdir -p "$SITE/nvidia_cudnn_cu13-9.13.0.50.dist-info" "$SITE/nvidia_cublas-13.0.2.14.dist-info"
echo "nvidia/cudnn/lib/libcudnn.so.9,sha256=x,1" \
  >"$SITE/nvidia_cudnn_cu13-9.13.0.50.dist-info/RECORD"
printf '%s\n' "nvidia/cublas/lib/libcublas.so.13,sha256=x,1" \
  "nvidia/cublas/lib/libcublasLt.so.13,sha256=x,1" >"$SITE/nvidia_cublas-13.0.2.14.dist-info/RECORD"
fake_lib "$TMP/cuda/lib64/libcudart.so.13.0.96" libcudart.so.13
ln -s libcudart.so.13.0.96 "$TMP/cuda/lib64/libcudart.so.13"
mkdir -p "$TMP/bin"
printf '#!/bin/sh\n# site.getsitepackages(), as the machine'"'"'s python3 would say it\necho %s\n' \
  "$SITE" >"$TMP/bin/python3"
chmod +x "$TMP/bin/python3"

cuda_build=0
grep -q '^EMBER_CUDA:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && cuda_build=1
start=$SECONDS
PATH="$TMP/bin:$PATH" GPU_CHECK_CUDA_DIRS="$TMP/cuda/lib64" OUT="$TMP/out" \
  bash "$M/scripts/gpu-check.sh" run >/dev/null || {
  tail -n 30 "$TMP/out/log.txt"
  fail "run without a GPU did not exit 0"
}
echo "run without a GPU: $((SECONDS - start)) s"
[[ -f "$TMP/out/log.txt" ]] || fail "no log.txt"
grep -q "^libember: $M/build-gpu/libember.so" "$TMP/out/log.txt" ||
  fail "the unpacked binaries do not load the unpacked libember.so: $(grep '^libember' \
    "$TMP/out/log.txt")"
grep -q '^LD_LIBRARY_PATH=.*nvidia/cudnn/lib' "$TMP/out/log.txt" ||
  fail "LD_LIBRARY_PATH lacks the pip cuDNN folder"
n_samples=$(grep -c '^samples/' "$TMP/contents.txt" || true)
json_check "$TMP/out/summary.json" "
names = [t['name'] for t in s['steps']]
assert names == ['setup', 'info', 'tests', 'samples', 'memcheck'], names
st = {t['name']: t for t in s['steps']}
assert s['status'] == 'ok' and s['mode'] == 'run' and s['gpu']['present'] is False, s
assert st['setup']['status'] == 'ok' and st['info']['status'] == 'ok', st
assert 'ember' in st['info']['ember_info'], st['info']
for n in ('tests', 'samples', 'memcheck'):
    assert st[n]['status'] == 'skipped: no GPU', st[n]
assert s['budget'] == {'limit_s': 480, 'setup_s': 20, 'steps_s': 460}, s['budget']
lib = {l['name']: l for l in s['libraries']}
assert lib['libcudnn.so.9']['source'] == 'pip', lib
assert lib['libcudnn.so.9']['version'] == '9.13.0.50 (pip nvidia_cudnn_cu13)', lib
assert lib['libcublas.so.13']['version'].startswith('13.0.2.14'), lib
assert lib['libcublasLt.so.13']['path'].endswith('nvidia/cublas/lib/libcublasLt.so.13'), lib
assert lib['libcudart.so.13']['source'] == 'cuda', lib
assert lib['libcudart.so.13']['version'] in ('13.0.96',) or $cuda_build, lib
assert lib['libcurand.so.10']['found'] is False, lib
suites = st['tests']['suites']
if $cuda_build:
    assert suites and all(x['status'] == 'skipped: no GPU' for x in suites), suites
    assert all(x['filter'] for x in suites), suites
else:
    assert suites == [] and any('no CUDA test suites' in n for n in s['notes']), s['notes']
runs = st['samples']['runs']
assert len(runs) == ($n_samples + 1 if $n_samples else 0), runs
assert all(r['status'] == 'skipped: no GPU' for r in runs), runs
print('summary: %d CUDA suites, %d sample runs, libraries %s' % (len(suites), len(runs),
      ', '.join('%s %s' % (k, v.get('source', 'not found')) for k, v in lib.items())))
"
ok "run: unpacked in a temporary folder, libraries found, summary.json has every step"

# --- 4. the benchmarks' run ------------------------------------------------------------------
# Carried as it would be: the check's carry and the benchmarks'.
rc=0
PATH="$TMP/bin:$PATH" GPU_CHECK_CUDA_DIRS="$TMP/cuda/lib64" OUT="$TMP/out-bench" \
  bash "$M/scripts/gpu-check.sh" bench >/dev/null || rc=$?
if compgen -G "$BUILD/benchmarks/bench_*" >/dev/null; then
  ((rc == 0)) || fail "bench without a GPU exited $rc"
  json_check "$TMP/out-bench/summary.json" "
assert [t['name'] for t in s['steps']] == ['setup', 'info', 'bench'], s['steps']
assert s['steps'][2]['status'] == 'skipped: no GPU', s['steps'][2]
assert s['steps'][2]['benchmarks'], s['steps'][2]
assert s['budget']['steps_s'] <= 480, s['budget']
"
  ok "bench: a run of its own, skipped without a GPU"
else
  ((rc != 0)) || fail "bench with no benchmarks built exited 0"
  grep -q 'no .*bench_\*: carry build-gpu/carry-bench' "$TMP/out-bench/log.txt" ||
    fail "bench with no benchmarks: no error saying so"
  json_check "$TMP/out-bench/summary.json" "
assert s['status'] == 'failed' and 'unpacking failed (log.txt)' in s['notes'], s
"
  ok "bench: no benchmarks in this build, and the run says so"
fi

# --- 5. how each process ended, with fake binaries and a GPU assumed -----------------------
F="$TMP/fake/build-gpu"
mkdir -p "$F/tests" "$F/samples" "$F/bin"
cat >"$F/tests/ember_api_tests" <<'EOF'
#!/bin/bash
filter=""
for a; do
  case $a in
    --gtest_list_tests)
      printf '%s\n' OkCuda. '  Adds' '  Muls' CrashAfterPassCuda. '  Runs' HangCuda. \
        '  Sleeps' FailCuda. '  Fails' BadMemCuda. '  Reads' Tensor. '  Adds' \
        '  CopiesToCuda' Cpu. '  Only' 'Shapes/ConvCuda.  # TypeParam = float' \
        '  Runs/0  # GetParam() = 1'
      exit 0 ;;
    --gtest_filter=*) filter=${a#--gtest_filter=} ;;
  esac
done
case $filter in
  OkCuda.\* | Tensor.CopiesToCuda | Shapes/ConvCuda.\*) echo '[  PASSED  ] 2 tests.' ;;
  CrashAfterPassCuda.\*) echo '[  PASSED  ] 1 test.'; kill -SEGV $$ ;;
  HangCuda.\*) exec sleep 60 ;;
  FailCuda.\*) echo '[  PASSED  ] 0 tests.' | sed 's/PASSED/FAILED/'; exit 1 ;;
  BadMemCuda.\*)
    echo '[  PASSED  ] 1 test.'
    if [[ -n ${FAKE_SANITIZER:-} ]]; then echo '========= ERROR SUMMARY: 2 errors'; exit 99; fi ;;
  *) echo "unexpected filter $filter"; exit 3 ;;
esac
EOF
printf '#!/bin/bash\n[[ $1 == --gtest_list_tests ]] && printf "Cpu.\\n  Only\\n"\nexit 0\n' \
  >"$F/tests/ember_internal_tests"
printf '#!/bin/sh\necho "ember (fake)"\n' >"$F/bin/ember"
printf '#!/bin/sh\necho "the loss fell: 2.3 -> 0.5"; echo "test accuracy: 81.20%%"\n' \
  >"$F/samples/fashion_mlp"
printf '#!/bin/sh\necho "the loss fell: 2.3 -> 2.2"; echo "test accuracy: 12.00%%"\n' \
  >"$F/samples/small_dense"
printf '#!/bin/bash\nwhile [[ $1 == --* ]]; do shift 2; done\nFAKE_SANITIZER=1 exec "$@"\n' \
  >"$TMP/bin/compute-sanitizer"
: >"$F/libember.so"
chmod +x "$F"/tests/* "$F"/samples/* "$F"/bin/* "$TMP/bin/compute-sanitizer"
start=$SECONDS
PATH="$TMP/bin:$PATH" GPU_CHECK_GPU=1 GPU_CHECK_BUILD="$F" GPU_CHECK_CUDA_DIRS="$TMP/cuda/lib64" \
  GPU_CHECK_T_SUITE=3 GPU_CHECK_T_SAMPLE=5 GPU_CHECK_T_MEMCHECK_SUITE=5 \
  GPU_CHECK_MEMCHECK_SUITES="OkCuda BadMemCuda NotThere" OUT="$TMP/out-fake" \
  bash "$SCRIPT" run >/dev/null && fail "a run with failing suites exited 0"
echo "run with fake binaries: $((SECONDS - start)) s"
json_check "$TMP/out-fake/summary.json" "
st = {t['name']: t for t in s['steps']}
assert s['status'] == 'failed' and s['gpu']['present'] is True, s
got = {x['suite']: x['status'] for x in st['tests']['suites']}
assert got == {
    'OkCuda': 'passed', 'CrashAfterPassCuda': 'crashed after PASSED: signal SEGV',
    'HangCuda': 'timed out', 'FailCuda': 'failed: exit 1', 'BadMemCuda': 'passed',
    'Tensor': 'passed', 'Shapes/ConvCuda': 'passed'}, got
f = {x['suite']: x['filter'] for x in st['tests']['suites']}
assert f['Tensor'] == 'Tensor.CopiesToCuda' and f['OkCuda'] == 'OkCuda.*', f
ok = [x for x in st['tests']['suites'] if x['suite'] == 'OkCuda'][0]
assert ok['exit_code'] == 0 and ok['passed_line'] is True and ok['tests_passed'] == 2, ok
crash = [x for x in st['tests']['suites'] if x['suite'] == 'CrashAfterPassCuda'][0]
assert crash['exit_code'] == 139 and crash['passed_line'] is True, crash
assert st['tests']['status'] == 'failed', st['tests']
mem = {x['suite']: x['status'] for x in st['memcheck']['suites']}
assert mem == {'OkCuda': 'passed', 'BadMemCuda': 'sanitizer errors: ERROR SUMMARY: 2 errors'}, mem
runs = {r['sample']: r for r in st['samples']['runs']}
assert runs['fashion_mlp']['status'] == 'passed', runs
assert runs['fashion_mlp --trainer']['accuracy'] == '81.20%', runs
assert runs['small_dense']['status'].startswith('failed: did not learn'), runs
"
ok "per-suite processes: passed, failed, timed out, crashed after PASSED, sanitizer errors"
echo "gpu-check rehearsal passed"
