"""Streaming an image folder from disk against holding it in memory: peak memory and time per epoch.

Writes folders of 4,000 and 8,000 PNGs (10 classes, 64x64 noise tinted per class), then loads each and trains
lenet5 for one epoch, each time in a fresh process so that each has its own peak resident memory: held in memory,
and with &stream=1 (decoded by DataLoader worker processes, batch by batch). Memory is the claim: going from the
small folder to the big one, the in-memory process grows with the images and the streamed one does not
(`growth_per_decoded_byte`: extra peak memory per byte of extra decoded images). The epoch times come from
separate processes and are hints, not a speed-up.
"""
import _common

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES, CLASSES, SIDE = (4000, 8000), 10, 64  # both above STATS_SAMPLE training images

CHILD = """
import json, resource, sys, time
import torch, torchvision, PIL.Image  # imported before the baseline: their own memory is not the folder's
from compression import build_model, load_dataset, parse_spec
from compression.core.train import TrainConfig, train

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

before = peak_mib()
start = time.perf_counter()
data = load_dataset(sys.argv[1])
loaded = time.perf_counter()
torch.manual_seed(0)
model = build_model(parse_spec("lenet5"), data.input_shape, data.num_classes)
history = train(model, data, TrainConfig(epochs=1, batch_size=64))
done = time.perf_counter()
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"streamed": data.streamed, "load_s": loaded - start, "epoch_s": done - loaded,
                  "val_accuracy": history[-1]["val_accuracy"], "growth_mib": peak_mib() - before,
                  "peak_mib": peak_mib(), "worker_peak_mib": workers}))
"""


def write_folder(root: Path, images: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tints = rng.integers(0, 255, (CLASSES, 3))
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(images // CLASSES):
            pixels = rng.random((SIDE, SIDE, 3)) * 160 + tints[c] * 0.4
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / f"class_{c}" / f"{i}.png")


def run(name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rounded(result: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


if __name__ == "__main__":
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for images in SIZES:
            root = Path(tmp) / f"folder{images}"
            write_folder(root, images)
            results[images] = {"in_memory": run(f"imagefolder:{root}?size={SIDE}"),
                               "streamed": run(f"imagefolder:{root}?size={SIDE}&stream=1")}
    small, big = SIZES
    extra_mib = (big - small) * 3 * SIDE * SIDE * 4 / 2**20  # what the extra images take decoded, as float32

    def slope(mode):  # memory growth per extra image, as a fraction of the image's decoded size
        return (results[big][mode]["growth_mib"] - results[small][mode]["growth_mib"]) / extra_mib

    same = all(r["in_memory"]["val_accuracy"] == r["streamed"]["val_accuracy"] for r in results.values())
    _common.emit({"benchmark": "stream", "images": list(SIZES), "side": SIDE,
                  "runs": {str(n): {mode: rounded(r) for mode, r in pair.items()} for n, pair in results.items()},
                  "growth_per_decoded_byte": {"in_memory": round(slope("in_memory"), 3),
                                              "streamed": round(slope("streamed"), 3)},
                  "same_val_accuracy": same,
                  "goals_met": {"streamed_memory_does_not_grow_with_the_folder": slope("streamed") < 0.1,
                                "same_numbers": same}})
