"""What every stage stands on: the DuckDB store and its migrations, the read-only snapshot for
analysts, connection retry while another process holds the database, PII scrubbing."""
