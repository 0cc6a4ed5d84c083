"""Shared by the benchmarks: a throwaway lab folder, one JSON line out. (The project is installed with
`pip install -e .` by make, so `import compression` works from here.)"""
import json
import os
import tempfile

os.environ.setdefault("COMPRESSION_LAB_HOME", tempfile.mkdtemp(prefix="bench-lab-"))


def emit(payload: dict) -> None:
    import torch
    payload.setdefault("threads", torch.get_num_threads())
    payload.setdefault("torch", torch.__version__)
    print(json.dumps(payload))
