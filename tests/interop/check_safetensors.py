"""safetensors both ways, bit for bit: DIR/ember.safetensors (written by ember) read by the
`safetensors` package's numpy API must hold, for every tensor t<k>_<DTYPE>, the byte
pattern interop_files.cpp wrote; then the same tensors are written with safetensors'
save_file to DIR/python.safetensors and `interop_files verify` reads them back in ember.
No dtype list here: whatever ember wrote is checked."""
import pathlib
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def pattern(k: int, nbytes: int, is_bool: bool) -> bytes:
    """Byte i of tensor k, as interop_files.cpp's pattern_byte."""
    i = np.arange(nbytes, dtype=np.int64)
    b = ((i * 167 + 13 + k * 31) & 0xFF).astype(np.uint8)
    return (b & 1 if is_bool else b).tobytes()


def main() -> int:
    folder = pathlib.Path(sys.argv[1])
    verify = sys.argv[2]
    ember_file = folder / "ember.safetensors"
    tensors = load_file(str(ember_file))
    with safe_open(str(ember_file), framework="numpy") as f:
        metadata = f.metadata()
    failed = 0
    if metadata != {"writer": "ember"}:
        print(f"FAIL metadata {metadata}, expected {{'writer': 'ember'}}")
        failed += 1
    for name in sorted(tensors, key=lambda n: int(n[1:].split("_")[0])):
        dtype_name = name.split("_", 1)[1]
        t = tensors[name]
        ok = (t.dtype == NUMPY_DTYPES[dtype_name] and t.shape == (3, 5, 7) and
              t.tobytes() == pattern(int(name[1:].split("_")[0]), t.nbytes, t.dtype == np.bool_))
        verdict = "bit for bit" if ok else "DIFFERS"
        print(f"ember -> safetensors {name:8s} {str(t.dtype):8s} {verdict}")
        failed += 0 if ok else 1
    save_file(tensors, str(folder / "python.safetensors"), metadata={"writer": "python"})
    back = subprocess.run([verify, "verify", str(folder.parent)], capture_output=True, text=True)
    for line in back.stdout.splitlines():
        print(f"safetensors -> ember {line}")
    if back.returncode != 0:
        print(f"FAIL interop_files verify: exit {back.returncode} {back.stderr.strip()}")
        failed += 1
    print(f"{len(tensors)} dtypes, {failed} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
