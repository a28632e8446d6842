#!/usr/bin/env bash
# Lists every #include of an ember header that goes up a layer of the house, or around one,
# and every CUDA header included above core; exits 1 when there is one (docs/building.md,
# "The layer rule"). tests/, samples/, benchmarks/ and scripts/ are exempt.
#
#   base     core/base/         may include base
#   kernels  kernels/           base, kernels
#   core     core/ (not base/)  base, kernels, core
#   layers   layers/            the public headers of core (and of base), layers
#   optim    optim/             the public headers of core (and of base), optim
#   api      python_free_api/,  the public headers of core, layers and optim; python_free_api
#            ember.h
#
# Public headers are those of cmake/public-headers.txt; a public header includes only public
# headers. CUDA, cuBLAS, cuDNN, cuRAND, CUB and Thrust headers: base, kernels and core only,
# and never in a public header. Also reports a line of cmake/layer-exceptions.txt whose
# file no longer includes across a layer (the line should go with the fix).
#
# Usage: scripts/check-includes.sh [REPO_ROOT]   (default: this script's repository)
set -euo pipefail

root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root"

declare -A public=()
while read -r h _; do
  [[ -z "$h" || "$h" == \#* ]] && continue
  public["$h"]=1
done <cmake/public-headers.txt

declare -A excepted=()
if [[ -f cmake/layer-exceptions.txt ]]; then
  while read -r f _; do
    [[ -z "$f" || "$f" == \#* ]] && continue
    excepted["$f"]=1
  done <cmake/layer-exceptions.txt
fi

# The layer a file of the repository belongs to; nothing for exempt files.
layer_of() {
  case "$1" in
    core/base/*) echo base ;;
    kernels/*) echo kernels ;;
    core/*) echo core ;;
    layers/*) echo layers ;;
    optim/*) echo optim ;;
    python_free_api/* | ember.h) echo api ;;
  esac
}

# Why `from` (a layer) may not include the ember header `target`; nothing when it may.
violation() {
  local from=$1 target=$2 to
  to=$(layer_of "$target")
  case "$from:$to" in
    base:base | kernels:base | kernels:kernels | core:base | core:kernels | core:core) return ;;
    layers:layers | optim:optim | api:api) return ;;
  esac
  case "$from:$to" in
    base:* | kernels:core | kernels:layers | kernels:optim | kernels:api | core:layers | \
      core:optim | core:api | layers:api | optim:api)
      echo "$from may not include ${to:-unknown}/: includes go down the layers only" \
        "(base <- kernels <- core <- layers, optim <- python_free_api)"
      ;;
    layers:optim | optim:layers)
      echo "layers/ and optim/ are siblings: neither includes the other (what both need" \
        "belongs in core's public headers)"
      ;;
    *:kernels)
      echo "only core sees kernels/: $from goes through core's public API (Tensor and ops)"
      ;;
    layers:base | layers:core | optim:base | optim:core | api:base | api:core | api:layers | \
      api:optim)
      [[ -n "${public[$target]:-}" ]] && return
      echo "$target is internal (not in cmake/public-headers.txt): $from sees only the" \
        "public headers of the layers below it"
      ;;
    *)
      echo "$target is in no layer of ember"
      ;;
  esac
}

found=0
declare -A violating=()
report() {  # file line message...
  echo "$1:$2: ${*:3}"
  found=$((found + 1))
  violating["$1"]=1
}

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
  ember.h core kernels layers optim python_free_api |
  grep -E '\.(h|hpp|cuh|cpp|cc|cu)$' | sort -u)

cuda_header='(cuda[A-Za-z_0-9]*|cublas[A-Za-z_0-9]*|cudnn[A-Za-z_0-9]*|curand[A-Za-z_0-9]*|cufft[A-Za-z_0-9]*|cusparse[A-Za-z_0-9]*|nvrtc|nccl|nvtx3?/[^>"]*|cub/[^>"]*|thrust/[^>"]*|cuda/[^>"]*)(\.h|\.hpp|\.cuh)?'

for f in "${files[@]}"; do
  [[ -f "$f" ]] || continue
  from=$(layer_of "$f")
  [[ -n "$from" ]] || continue
  is_public="${public[$f]:-}"
  while IFS=: read -r line text; do
    if [[ "$text" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\<\"]ember/([^\>\"]+)[\>\"] ]]; then
      target="${BASH_REMATCH[1]}"
      why=$(violation "$from" "$target")
      if [[ -n "$why" ]]; then
        report "$f" "$line" "includes ember/$target: $why"
      elif [[ -n "$is_public" && -z "${public[$target]:-}" ]]; then
        report "$f" "$line" "includes ember/$target: a public header (installed) includes" \
          "only public headers, and $target is internal (not in cmake/public-headers.txt)"
      fi
    elif [[ "$text" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\<\"]($cuda_header)[\>\"] ]]; then
      target="${BASH_REMATCH[1]}"
      case "$from" in
        base | kernels | core)
          if [[ -n "$is_public" ]]; then
            report "$f" "$line" "includes <$target>: a public header (installed) includes no" \
              "CUDA, cuBLAS or cuDNN header"
          fi
          ;;
        *)
          report "$f" "$line" "includes <$target>: CUDA headers are for base, kernels and core" \
            "only; $from calls ember's API, which works with and without CUDA (EMBER_CUDA=OFF)"
          ;;
      esac
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$f" || true)
done

stale=0
while IFS= read -r f; do
  [[ -n "$f" && -z "${violating[$f]:-}" ]] || continue
  echo "cmake/layer-exceptions.txt: $f includes nothing across a layer any more: remove its line"
  stale=$((stale + 1))
done < <(printf '%s\n' "${!excepted[@]}" | sort)

if ((found > 0 || stale > 0)); then
  echo "check-includes: $found include(s) across the layers, $stale stale exception(s)" \
    "(rules: docs/building.md, \"The layer rule\")"
  exit 1
fi
echo "check-includes: every include follows the layers (${#files[@]} files)"
