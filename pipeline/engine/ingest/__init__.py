"""Trace ingestion: files (JSONL, JSON, Parquet; own format, OpenAI chat logs, LangSmith runs)
and LangSmith runs into raw_traces, bad records into rejected_traces with their reasons.

- :mod:`records`: the reference validator of one record (the reasons people read)
- :mod:`formats`: OpenAI chat and LangSmith run records mapped onto the trace format
- :mod:`lines`: numbered lines of a file as Arrow arrays, in bounded chunks
- :mod:`sql`: the DuckDB fast path, content hashes and key-based inserts
- :mod:`files`: discovery, the ingested-files ledger, per-file ingestion
- :mod:`langsmith_source`: runs pulled from the LangSmith API by time window
"""
