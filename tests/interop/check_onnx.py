"""ember's ONNX files against ONNX Runtime: every DIR/<model>.onnx passes
onnx.checker.check_model (full check), has opset >= 17, an input "input" and an output
"output" whose dim 0 is the symbolic "batch", and, run by ONNX Runtime on the inputs in
DIR/<model>.io.safetensors (batches 1 and 7), gives ember's outputs within float32
tolerance. Prints the largest absolute difference per model."""
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

ATOL = 1e-4  # float32 through different summation orders; a wrong layer is off by far more
RTOL = 1e-3


def check(path: pathlib.Path) -> list[str]:
    errors = []
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 17:
        errors.append(f"opset {opset} < 17")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != ["input"] or outputs != ["output"]:
        errors.append(f"inputs {inputs}, outputs {outputs}: expected ['input'], ['output']")
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.dim_param != "batch":
        errors.append(f"input dim 0 is {dim0}, not the symbolic 'batch'")

    io = load_file(str(path).removesuffix(".onnx") + ".io.safetensors")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 7):
        x, want = io[f"input_b{batch}"], io[f"output_b{batch}"]
        (got,) = session.run(["output"], {"input": x})
        if got.shape != want.shape:
            errors.append(f"batch {batch}: ONNX Runtime gives {got.shape}, ember {want.shape}")
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(got, want, atol=ATOL, rtol=RTOL):
            errors.append(f"batch {batch}: max |ONNX Runtime - ember| = {diff:.3g}")
    size_mb = path.stat().st_size / 1e6
    nodes = len(model.graph.node)
    print(f"{path.stem:18s} opset {opset}  {nodes:3d} nodes  {size_mb:7.2f} MB  "
          f"max |ORT - ember| (batch 1, 7) = {worst:.3g}")
    return errors


def main() -> int:
    folder = pathlib.Path(sys.argv[1])
    files = sorted(folder.glob("*.onnx"))
    if not files:
        print(f"no .onnx files in {folder}")
        return 1
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    failed = 0
    for f in files:
        for e in check(f):
            print(f"  FAIL {f.stem}: {e}")
            failed += 1
    print(f"{len(files)} models, {failed} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
