#!/usr/bin/env bash
# Creates the interop tests' Python environment (ONNX Runtime, onnx, safetensors,
# TensorBoard, numpy) at $1, once: a later run with the same package list is a no-op, and
# pip's cache makes a fresh one cheap. Where it cannot be made (no network, no venv
# module), it writes the reason to $1.unavailable and succeeds, so the interop tests skip
# with that reason instead of failing.
set -uo pipefail

venv="$1"
packages=(numpy onnx onnxruntime safetensors tensorboard)
stamp="$venv/.ember-interop-packages"
unavailable="$venv.unavailable"

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${packages[*]}" ]; then
  echo "interop venv: $venv is ready (${packages[*]})"
  exit 0
fi
rm -f "$unavailable"

give_up() {
  echo "$1" > "$unavailable"
  echo "interop venv: unavailable: $1 (the interop tests will be skipped)"
  exit 0
}

python3 -m venv "$venv" > "$venv.log" 2>&1 ||
  give_up "python3 -m venv failed (is python3-venv installed?): $(tail -n 1 "$venv.log")"
# A pip that cannot reach the index gives up after a few quick tries.
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --timeout 30 --retries 2 \
    "${packages[@]}" >> "$venv.log" 2>&1; then
  give_up "pip could not install ${packages[*]} (no access to PyPI?): $(tail -n 1 "$venv.log")"
fi
echo "${packages[*]}" > "$stamp"
"$venv/bin/python" -c "import numpy, onnx, onnxruntime, safetensors, tensorboard; \
print('interop venv: numpy', numpy.__version__, 'onnx', onnx.__version__, 'onnxruntime', \
onnxruntime.__version__, 'safetensors', safetensors.__version__, 'tensorboard', \
tensorboard.__version__)" || give_up "the installed packages do not import"
