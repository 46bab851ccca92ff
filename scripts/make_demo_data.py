"""Regenerate the bundled demo data deterministically.

    python scripts/make_demo_data.py [--out data/demo] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.demo.generate import DEFAULT_SEED, write_demo_data  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    counts = write_demo_data(args.out, args.seed)
    out = Path(args.out)
    for name in ("traces/chat_logs.jsonl", "traces/langsmith_runs.jsonl", "prompt_layouts.yaml",
                 "annotations.jsonl", "base_corpus.jsonl"):
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1e6:.2f} MB)")
    print(f"traces: {counts['traces']} good + {counts['bad_lines']} deliberately bad lines + "
          f"{counts['duplicate_lines']} re-logged duplicates = {sum(counts['lines'].values())} lines "
          f"{counts['lines']}; prompt versions {counts['prompt_versions']}; "
          f"team-only share {counts['team_only_share']:.1%}")
    print(f"columns listed per request: {counts['columns_listed']}; requests listing an empty name: "
          f"{counts['empty_names']}")
    print("injected modes:")
    for mode, n in counts["modes"].items():
        print(f"  {mode:28s} {n:5d}  {n / counts['traces']:6.1%}")
    print(f"annotations: {counts['annotations']} {counts['annotation_labels']}")
    print(f"base corpus: {counts['base_corpus']} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
