"""Shared fixtures: a tiny, offline configuration of the whole pipeline in a temporary folder."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """Every fifth line of the demo traces (two deliberately bad lines among them), their
    annotations, and a small slice of the base corpus, in a temporary folder."""
    folder = tmp_path_factory.mktemp("demo")
    lines = (DEMO / "traces.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[::5]
    (folder / "traces.jsonl").write_text("".join(lines), encoding="utf-8")
    ids = set()
    for line in lines:
        try:
            ids.add(json.loads(line).get("trace_id"))
        except (json.JSONDecodeError, AttributeError):
            pass
    annotations = [a for a in (DEMO / "annotations.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
                   if json.loads(a)["trace_id"] in ids]
    (folder / "annotations.jsonl").write_text("".join(annotations), encoding="utf-8")
    corpus = (DEMO / "base_corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:300]
    (folder / "base_corpus.jsonl").write_text("".join(corpus), encoding="utf-8")
    return folder
