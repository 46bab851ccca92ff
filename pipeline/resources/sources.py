"""What comes in: trace files, LangSmith runs, files of people's decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import field_validator
from pydantic import Field

from pipeline.engine.ingest.langsmith_source import RunQuery


class TraceFiles(dg.ConfigurableResource):
    """Trace files to ingest: JSONL, JSON or Parquet (optionally gzip) files, or folders searched
    recursively; records in the project's format, OpenAI chat logs or LangSmith run exports.
    A file modified less than ``settle_seconds`` ago is still being written: only its complete
    lines are read (other formats wait). Settings out of range fail when the resource is made,
    with the setting named (a path that does not exist yet is fine: it is a folder to watch).
    ``prompt_layouts`` names layout files (YAML or JSON) of the production prompts chat logs may
    be written by (docs/ingestion.md, "Production prompt layouts")."""

    #: The drop folder a deployment watches; the task's demo traces are added by default_resources.
    INCOMING: ClassVar[str] = "data/traces/incoming"

    paths: list[str] = [INCOMING]
    source_name: str = "drop_folder"
    max_record_bytes: int = 1_000_000
    settle_seconds: float = 5.0
    prompt_layouts: list[str] = []

    @field_validator("paths", mode="before")
    @classmethod
    def _paths(cls, paths: Any) -> Any:
        for path in paths if isinstance(paths, list) else []:
            if isinstance(path, str) and (not path.strip() or "\x00" in path):
                raise ValueError(f"TraceFiles.paths: {path!r} is not a usable path (empty, or holding a NUL byte)")
        return paths

    @field_validator("max_record_bytes", mode="before")
    @classmethod
    def _max_record_bytes(cls, value: Any) -> Any:
        if _given(value) and value <= 0:
            raise ValueError(f"TraceFiles.max_record_bytes must be a positive number of bytes, got {value!r}")
        return value

    @field_validator("settle_seconds", mode="before")
    @classmethod
    def _settle_seconds(cls, value: Any) -> Any:
        if _given(value) and not 0 <= value < float("inf"):
            raise ValueError(f"TraceFiles.settle_seconds must be 0 or more (finite), got {value!r}")
        return value


def _given(value: Any) -> bool:
    """Whether ``value`` is a number given now (not an environment variable read at run time)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not hasattr(value, "env_var_name")


class LangSmithSource(dg.ConfigurableResource):
    """Runs pulled from the LangSmith API: a project, a run type and a filter expression (for
    example ``has(tags, "production")``). ``api_key`` comes from the environment
    (``dg.EnvVar("LANGSMITH_API_KEY")``), never from code, and is left out of the repr (errors
    from the API come with it redacted); ``api_url`` defaults to LANGSMITH_ENDPOINT or
    LangSmith's cloud. Unconfigured (no key or project), it pulls nothing. ``prompt_layouts``
    names layout files of the production prompts its runs' messages may be written by."""

    project: str | None = None
    run_type: str | None = "llm"
    filter: str | None = None
    api_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    source_name: str = "langsmith"
    prompt_layouts: list[str] = []

    def configured(self) -> bool:
        return bool(self.api_key and self.project)

    def query(self) -> RunQuery:
        return RunQuery(project=self.project or "", run_type=self.run_type, filter=self.filter)

    def client(self):
        from langsmith import Client

        return Client(api_url=self.api_url, api_key=self.api_key)


class AnnotationFiles(dg.ConfigurableResource):
    """Files of human decisions to import (the annotation app writes to the table directly)."""

    INCOMING: ClassVar[str] = "data/annotations/incoming"

    paths: list[str] = [INCOMING]

    def files(self) -> list[Path]:
        found = []
        for raw in self.paths:
            path = Path(raw)
            found += [path] if path.is_file() else sorted(path.glob("*.jsonl")) if path.is_dir() else []
        return found
