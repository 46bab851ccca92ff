"""The LangSmith source keeps its key out of its repr (what an error or a log line may print)."""

import dagster as dg

from pipeline.resources.sources import LangSmithSource

KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"


def test_the_langsmith_key_stays_out_of_the_resource_repr(monkeypatch):
    monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
    source = LangSmithSource(api_key=dg.EnvVar("LANGSMITH_API_KEY"), project="nl2query-prod")
    with dg.build_resources({"langsmith": source}) as resources:
        assert resources.langsmith.api_key == KEY and resources.langsmith.configured()
        assert KEY not in repr(resources.langsmith) and "nl2query-prod" in repr(resources.langsmith)
