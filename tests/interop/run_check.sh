#!/usr/bin/env bash
# Runs one interop check (a Python script of this folder) in the venv setup_venv.sh made:
#   run_check.sh VENV SCRIPT ARGS...
# Exits 77 (CTest's SKIP_RETURN_CODE for these tests) with the reason when the venv could
# not be made.
set -uo pipefail
venv="$1"
shift
if [ -f "$venv.unavailable" ] || [ ! -x "$venv/bin/python" ]; then
  reason="$(cat "$venv.unavailable" 2>/dev/null || echo "$venv was not created")"
  echo "SKIPPED: the interop venv is unavailable: $reason"
  exit 77
fi
exec "$venv/bin/python" "$@"
