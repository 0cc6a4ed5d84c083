"""What safe model files cost (#24): a run's model written and read back as tensors plus the lab's JSON description
(compression/store/model_file.py, never unpickled), against the whole pickled module the lab stored before.
Ratios of the best of 3 in one process; sizes in bytes."""
import io
import time
import warnings

from _common import emit

import torch

import compression
from compression.core.models import build_model
from compression.store import model_file
from compression.text.models import gpt


def best_of(fn, n=3) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pickled_round_trip(model) -> int:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    return len(buffer.getvalue())


def safe_round_trip(model) -> int:
    data = model_file.encode(model)
    model_file.decode(data)
    return len(data)


def main() -> None:
    warnings.simplefilter("ignore")
    digits = compression.load_dataset("digits")
    models = {"lenet5": build_model("lenet5", digits.input_shape, digits.num_classes),
              "resnet18": build_model("resnet18", digits.input_shape, digits.num_classes),
              "tv.vit_b_16": build_model("tv.vit_b_16", digits.input_shape, digits.num_classes),
              "gpt": gpt()}
    rows = {}
    for name, model in models.items():
        old_s, new_s = best_of(lambda: pickled_round_trip(model)), best_of(lambda: safe_round_trip(model))
        rows[name] = {"size_ratio": round(safe_round_trip(model) / pickled_round_trip(model), 4),
                      "time_ratio": round(new_s / old_s, 3), "safe_ms": round(new_s * 1000, 1),
                      "pickled_ms": round(old_s * 1000, 1)}
    emit({"benchmark": "model_files", "write_and_read_safe_vs_pickled": rows})


if __name__ == "__main__":
    main()
