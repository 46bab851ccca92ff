"""The embedded defaults: the chosen task's bundled data and production prompt layouts, and the
environment variables that replace them."""

import os

from pipeline.definitions import default_resources


def test_the_demo_task_reads_its_production_logs_with_the_layouts_of_the_prompts_that_wrote_them(monkeypatch):
    for variable in ("FLYWHEEL_TASK", "FLYWHEEL_TRACE_PATHS", "FLYWHEEL_PROMPT_LAYOUTS"):
        monkeypatch.delenv(variable, raising=False)
    resources = default_resources()
    assert resources["trace_files"].paths == ["data/demo/traces", "data/traces/incoming"]
    assert resources["trace_files"].prompt_layouts == ["data/demo/prompt_layouts.yaml"]
    assert resources["langsmith"].prompt_layouts == ["data/demo/prompt_layouts.yaml"]


def test_layout_files_come_from_the_environment_and_a_task_without_them_has_none(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_PROMPT_LAYOUTS", os.pathsep.join(["ours/v1.yaml", "ours/v2.json"]))
    resources = default_resources()
    assert resources["trace_files"].prompt_layouts == ["ours/v1.yaml", "ours/v2.json"]
    assert resources["langsmith"].prompt_layouts == ["ours/v1.yaml", "ours/v2.json"]
    monkeypatch.delenv("FLYWHEEL_PROMPT_LAYOUTS")
    monkeypatch.setenv("FLYWHEEL_TASK", "sql")
    assert default_resources()["trace_files"].prompt_layouts == []


def test_distillation_is_off_by_default_and_names_its_model_from_the_environment(monkeypatch):
    monkeypatch.delenv("FLYWHEEL_DISTILL_FROM", raising=False)
    assert default_resources()["curation"].config().distill_from is None
    monkeypatch.setenv("FLYWHEEL_DISTILL_FROM", "ft:gpt-4o-mini-2024-07-18:acme::x1")
    assert default_resources()["curation"].config().distill_from == "ft:gpt-4o-mini-2024-07-18:acme::x1"
