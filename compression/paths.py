"""Where the lab keeps its state: one folder for the database, checkpoints and data."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def lab_home() -> Path:
    """`$COMPRESSION_LAB_HOME`, else `.lab/` in the project (git ignores it)."""
    home = Path(os.environ.get("COMPRESSION_LAB_HOME") or PROJECT_ROOT / ".lab")
    home.mkdir(parents=True, exist_ok=True)
    return home


def checkpoints_dir() -> Path:
    path = lab_home() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_dir() -> Path:
    return lab_home() / "data"


def default_db_url() -> str:
    return f"sqlite:///{lab_home() / 'runs.db'}"


CLUSTER_ENV = "COMPRESSION_LAB_CLUSTER"


def cluster_url(explicit: str | None = None) -> str | None:
    """The cluster jobs go to: `explicit` (a --cluster flag), else $COMPRESSION_LAB_CLUSTER, else None (this
    machine)."""
    return (explicit or os.environ.get(CLUSTER_ENV) or "").strip() or None


def artifacts_url() -> str:
    """Where model files go: `$COMPRESSION_LAB_ARTIFACTS` (any fsspec URL: a folder, a shared mount, s3://bucket/
    prefix), else the lab folder's weights/. Runs store a key under it, so every machine that shares the database
    and this URL loads the same files."""
    return os.environ.get("COMPRESSION_LAB_ARTIFACTS") or str(lab_home() / "weights")
