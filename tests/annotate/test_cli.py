"""flywheel-annotate's options: this machine only unless told otherwise; database, annotator and
the proxy's identity header from the environment; never the OS user as a default name."""

from pipeline.annotate.__main__ import parse_args


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
