"""flywheel-annotate's options: this machine only unless told otherwise; database, annotator and
the proxy's identity header from the environment; never the OS user as a default name; the
second-opinion share and the leads from the environment too, the share checked; the snapshot
beside the database unless told otherwise."""

import pytest

from pipeline.annotate.__main__ import parse_args
from pipeline.engine.label.agreement import SECOND_OPINION_SHARE


def test_defaults_bind_locally_and_come_from_the_environment(monkeypatch):
    for name in ("FLYWHEEL_DUCKDB", "FLYWHEEL_ANNOTATOR", "FLYWHEEL_USER_HEADER"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args([])
    assert (args.host, args.database, args.annotator) == ("127.0.0.1", "data/flywheel.duckdb", "")
    assert (args.outbox, args.user_header) == ("data/annotations/incoming", "X-Forwarded-User")
    monkeypatch.setenv("FLYWHEEL_DUCKDB", "/tmp/x.duckdb")
    monkeypatch.setenv("FLYWHEEL_ANNOTATOR", "maya")
    monkeypatch.setenv("FLYWHEEL_USER_HEADER", "X-Auth-Request-Email")
    args = parse_args(["--port", "9000"])
    assert (args.database, args.annotator, args.port, args.user_header) == (
        "/tmp/x.duckdb", "maya", 9000, "X-Auth-Request-Email")
    assert parse_args(["--user-header", ""]).user_header == ""  # trust no header


def test_routing_leads_and_the_snapshot_are_options(monkeypatch):
    for name in ("FLYWHEEL_SECOND_OPINION_SHARE", "FLYWHEEL_LEADS"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args([])
    assert (args.second_opinion_share, args.leads, args.snapshot) == (SECOND_OPINION_SHARE, [], None)
    monkeypatch.setenv("FLYWHEEL_SECOND_OPINION_SHARE", "0.25")
    monkeypatch.setenv("FLYWHEEL_LEADS", "Maya, lee@example.com,")
    args = parse_args(["--snapshot", ""])
    assert (args.second_opinion_share, args.leads, args.snapshot) == (0.25, ["Maya", "lee@example.com"], "")
    assert parse_args(["--leads", "Pat"]).leads == ["Pat"]
    for bad in ("1.5", "-0.1", "a tenth"):
        with pytest.raises(SystemExit):
            parse_args(["--second-opinion-share", bad])
