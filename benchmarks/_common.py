"""Shared by the benchmarks: a throwaway lab folder, the project on sys.path, one JSON line out."""
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("COMPRESSION_LAB_HOME", tempfile.mkdtemp(prefix="bench-lab-"))


def emit(payload: dict) -> None:
    import torch
    payload.setdefault("threads", torch.get_num_threads())
    payload.setdefault("torch", torch.__version__)
    print(json.dumps(payload))
