"""Model directories: ``flywheel.json`` (configs and training figures) is written last, so a
directory that has it is complete; anything else there belongs to a run still going (its
tokenizer, its ``checkpoints/``) or one that crashed (resumed from those checkpoints)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

META_FILE = "flywheel.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"


def prepare(model_dir: Path) -> None:
    """Make ``model_dir`` ready for a run: incomplete (no metadata), nothing left but checkpoints."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / META_FILE).unlink(missing_ok=True)
    for entry in model_dir.iterdir():
        if entry.name != CHECKPOINTS:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def write_model(model_dir: Path, write_files: Callable[[Path], object], meta: dict) -> None:
    """Write the model's files into ``model_dir``, then its metadata (atomically, last)."""
    write_files(model_dir)
    tmp = model_dir / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, model_dir / META_FILE)


def read_meta(model_dir: Path) -> dict:
    """The metadata of the complete model in ``model_dir``."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no complete local model in {model_dir} (missing {META_FILE})")
    return json.loads(path.read_text())
