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
    """Every fifth line of each demo log (chat logs and LangSmith runs, deliberately bad lines
    among them), the layouts of the prompts that wrote them, their annotations, and a small slice
    of the base corpus, in a temporary folder."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "traces").mkdir()
    ids = set()
    for log in sorted((DEMO / "traces").iterdir()):
        lines = log.read_text(encoding="utf-8").splitlines(keepends=True)[::5]
        (folder / "traces" / log.name).write_text("".join(lines), encoding="utf-8")
        for line in lines:
            try:
                record = json.loads(line)
                ids.add(record.get("trace_id") if "messages" in record else f"ls_{record.get('id')}")
            except (json.JSONDecodeError, AttributeError):
                pass
    (folder / "prompt_layouts.yaml").write_text((DEMO / "prompt_layouts.yaml").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    annotations = [a for a in (DEMO / "annotations.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
                   if json.loads(a)["trace_id"] in ids]
    (folder / "annotations.jsonl").write_text("".join(annotations), encoding="utf-8")
    corpus = (DEMO / "base_corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:300]
    (folder / "base_corpus.jsonl").write_text("".join(corpus), encoding="utf-8")
    return folder
