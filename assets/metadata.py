"""Helpers for the metadata a person wants to see on an asset in the UI."""

from __future__ import annotations

import re

import dagster as dg
import polars as pl


#: What markdown may read as markup: links, images, emphasis, code, headings, tables, strike-through,
#: autolinks (``://``, ``www.``); an underscore inside a word (``llm_rewrite``) is plain text already.
_MARKUP = re.compile(r"[\\`*\[\]()#!|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|:(?=//)|(?<=www)\.", re.IGNORECASE)


def escape_markdown(value: object) -> str:
    """``value`` as text that markdown shows literally, on one line: markup characters
    backslash-escaped, ``&``, ``<`` and ``>`` as entities, so ``![x](http://...)`` stays text."""
    text = " ".join(("" if value is None else str(value)).splitlines())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKUP.sub(lambda markup: "\\" + markup.group(), text)


def preview(frame: pl.DataFrame, n: int = 10, max_chars: int = 120) -> dg.MetadataValue:
    """The first rows of a frame as a markdown table, long values shortened, data escaped."""
    if frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    shown = frame.head(n).with_columns(pl.all().cast(pl.String).str.slice(0, max_chars))
    header = "| " + " | ".join(map(escape_markdown, shown.columns)) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(map(escape_markdown, row)) + " |\n" for row in shown.iter_rows())
    return dg.MetadataValue.md(header + body)


def counts_table(counts: dict[str, int]) -> dg.MetadataValue:
    """A dict of counts as a two-column markdown table (the names escaped)."""
    rows = "".join(f"| {escape_markdown(k)} | {v:,} |\n" for k, v in counts.items())
    return dg.MetadataValue.md("| | count |\n|---|---|\n" + rows)


def share(value: float | None, digits: int = 4) -> float | None:
    """A share or rate rounded for people (0.4223 rather than 0.4223300970873786); None stays None."""
    return None if value is None else round(float(value), digits)
