"""flywheel-annotate's options: this machine only unless told otherwise; database and annotator
from the environment."""

import getpass

from pipeline.annotate.__main__ import parse_args


def test_defaults_bind_locally_and_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FLYWHEEL_DUCKDB", raising=False)
    monkeypatch.delenv("FLYWHEEL_ANNOTATOR", raising=False)
    args = parse_args([])
    assert (args.host, args.database, args.annotator) == ("127.0.0.1", "data/flywheel.duckdb", getpass.getuser())
    assert args.outbox == "data/annotations/incoming"
    monkeypatch.setenv("FLYWHEEL_DUCKDB", "/tmp/x.duckdb")
    monkeypatch.setenv("FLYWHEEL_ANNOTATOR", "maya")
    args = parse_args(["--port", "9000"])
    assert (args.database, args.annotator, args.port) == ("/tmp/x.duckdb", "maya", 9000)
