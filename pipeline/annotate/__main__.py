"""``flywheel-annotate``: serve the annotation app (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import os

from pipeline.engine.label.agreement import SECOND_OPINION_SHARE
from pipeline.engine.label.review import Review, task_guide
from pipeline.engine.tasks import load_task


def share(text: str) -> float:
    """A second-opinion share: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"the second-opinion share must be a number between 0 and 1, got {text!r}")
    return value


def names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flywheel-annotate", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database", default=os.environ.get("FLYWHEEL_DUCKDB") or "data/flywheel.duckdb",
                        help="DuckDB file, md: string or ducklake: catalog (default FLYWHEEL_DUCKDB or "
                             "data/flywheel.duckdb); on DuckLake saves go straight in while runs write")
    parser.add_argument("--annotator", default=os.environ.get("FLYWHEEL_ANNOTATOR") or "",
                        help="the name a browser that remembers none starts with (default FLYWHEEL_ANNOTATOR, "
                             "else none: each person enters theirs once)")
    parser.add_argument("--user-header", default=os.environ.get("FLYWHEEL_USER_HEADER", "X-Forwarded-User"),
                        help="request header a proxy in front of the app names the signed-in person in; it "
                             "overrides the name field (default FLYWHEEL_USER_HEADER or X-Forwarded-User; '' trusts none)")
    parser.add_argument("--task", default=os.environ.get("FLYWHEEL_TASK") or "nl2query",
                        help="task: a built-in name, a module path or a task file (default FLYWHEEL_TASK or nl2query)")
    parser.add_argument("--outbox", default="data/annotations/incoming",
                        help="where decisions wait while the database is busy (a DuckDB file held by a run; "
                             "never on DuckLake); the annotations asset imports it")
    parser.add_argument("--busy-seconds", type=float, default=3.0,
                        help="how long a save waits for a busy database before going to the outbox")
    parser.add_argument("--second-opinion-share", type=share,
                        default=os.environ.get("FLYWHEEL_SECOND_OPINION_SHARE") or str(SECOND_OPINION_SHARE),
                        help="share of traces routed to two annotators, 0 to 1 (default "
                             f"FLYWHEEL_SECOND_OPINION_SHARE or {SECOND_OPINION_SHARE})")
    parser.add_argument("--leads", type=names, default=os.environ.get("FLYWHEEL_LEADS") or "",
                        help="comma-separated names of the leads who adjudicate disagreements, as they sign in "
                             "(the proxy's header or the name field; default FLYWHEEL_LEADS, else nobody)")
    parser.add_argument("--snapshot", default=None,
                        help="where to publish the analysts' read-only copy after saves (default "
                             "<database stem>.snapshot.duckdb beside the database, as the pipeline does; '' for none; "
                             "MotherDuck and DuckLake have none: readers query the live tables)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from shiny import run_app

    from pipeline.annotate.app import create_app, start_flusher

    args = parse_args(argv)
    task = load_task(args.task)
    review = Review(args.database, args.outbox, task, busy_seconds=args.busy_seconds,
                    guide=task_guide(task, args.task), second_opinion_share=args.second_opinion_share,
                    snapshot=args.snapshot)
    start_flusher(review)
    print(f"annotation app on http://{args.host}:{args.port} (database {args.database}, outbox {args.outbox}, "
          f"snapshot {review.snapshot or 'none'}, leads {', '.join(args.leads) or 'none'})", flush=True)
    run_app(create_app(review, args.annotator, args.user_header or None, args.leads), host=args.host, port=args.port,
            dev_mode=False)


if __name__ == "__main__":
    main()
