"""Content and configuration hashes: what names a version of a file or of a set of settings.

A dataclass field's ``hash`` metadata says whether it counts: :data:`NOT_HASHED` for settings
that never change a model's identity (where it is trained, how often it is checkpointed),
:data:`HASHED_IF_SET` for ones that count only when not None.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

NOT_HASHED = {"hash": False}
HASHED_IF_SET = {"hash": "if_set"}


def hashed_fields(value: Any) -> Any:
    """``value`` as JSON-able data, dataclasses as dicts without the fields that do not change
    a model's identity (see NOT_HASHED, HASHED_IF_SET)."""
    if hasattr(value, "__dataclass_fields__"):
        out = {}
        for f in fields(value):
            item, rule = getattr(value, f.name), f.metadata.get("hash", True)
            if rule is False or (rule == "if_set" and item is None):
                continue
            out[f.name] = hashed_fields(item)
        return out
    if isinstance(value, (list, tuple)):
        return [hashed_fields(v) for v in value]
    return value


def config_hash(*parts: Any) -> str:
    """Short stable hash of configuration objects (dataclasses or JSON-able values); dataclass
    fields that do not change a model (its device, checkpoint cadence) are left out."""
    payload = json.dumps([hashed_fields(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def file_hash(path: Path) -> str:
    """Content hash of a file (the base corpus version)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
