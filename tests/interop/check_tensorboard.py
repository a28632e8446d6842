"""ember's TensorBoard event file read by TensorBoard's own reader (EventAccumulator, no
TensorFlow needed): the scalar tags, steps and values interop_files.cpp wrote."""
import pathlib
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EXPECTED = {
    "loss": [(s, np.float32(2.5) / np.float32(s + 1)) for s in range(10)],
    "accuracy": [(s, np.float32(0.1) * np.float32(s)) for s in range(10)],
    "lr/group0": [(9, np.float32(1e-3))],
}


def main() -> int:
    folder = pathlib.Path(sys.argv[1])
    files = list(folder.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(folder))
    acc.Reload()
    tags = sorted(acc.Tags()["scalars"])
    print(f"{len(files)} event file(s); scalar tags: {tags}")
    failed = 0
    if tags != sorted(EXPECTED):
        print(f"FAIL tags {tags}, expected {sorted(EXPECTED)}")
        failed += 1
    for tag, want in EXPECTED.items():
        got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)] if tag in tags else []
        ok = got == want
        print(f"{tag:10s} {len(got)} points, steps {[s for s, _ in got]}: "
              f"{'as written' if ok else 'DIFFERENT'}")
        if not ok:
            print(f"  got {got}\n  want {want}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
