"""Dagster resources: what varies per deployment, one module per concern.

- :mod:`.storage`: FlywheelDuckDB (the database and its read-only snapshot), FlywheelPaths (folders)
- :mod:`.sources`: TraceFiles, LangSmithSource, AnnotationFiles (what comes in)
- :mod:`.tasks`: TaskResource (the task under improvement)
- :mod:`.curation`: CurationSettings (what goes into training)
- :mod:`.models`: JudgeResource, LocalTrainer, TrainingCompute, FineTuning, EvalServing (model backends)
- :mod:`.settings`: settings_resource, a resource whose fields are an engine settings dataclass's
"""

from pipeline.resources.curation import CurationSettings
from pipeline.resources.models import EvalServing, FineTuning, JudgeResource, LocalTrainer, TrainingCompute
from pipeline.resources.sources import AnnotationFiles, LangSmithSource, TraceFiles
from pipeline.resources.storage import FlywheelDuckDB, FlywheelPaths
from pipeline.resources.tasks import TaskResource

__all__ = [
    "AnnotationFiles",
    "CurationSettings",
    "EvalServing",
    "FineTuning",
    "FlywheelDuckDB",
    "FlywheelPaths",
    "JudgeResource",
    "LangSmithSource",
    "LocalTrainer",
    "TaskResource",
    "TraceFiles",
    "TrainingCompute",
]
