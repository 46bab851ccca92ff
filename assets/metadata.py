"""Helpers for the metadata a person wants to see on an asset in the UI."""

from __future__ import annotations

import dagster as dg
import polars as pl


def preview(frame: pl.DataFrame, n: int = 10, max_chars: int = 120) -> dg.MetadataValue:
    """The first rows of a frame as a markdown table, long values shortened."""
    if frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    shown = frame.head(n).with_columns(pl.all().cast(pl.String).str.slice(0, max_chars))
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in shown.iter_rows())
    return dg.MetadataValue.md(header + body)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def counts_table(counts: dict[str, int]) -> dg.MetadataValue:
    """A dict of counts as a two-column markdown table."""
    rows = "".join(f"| {k} | {v:,} |\n" for k, v in counts.items())
    return dg.MetadataValue.md("| | count |\n|---|---|\n" + rows)
