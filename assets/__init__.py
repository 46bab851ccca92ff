"""Flywheel's software-defined assets, by group: ingest, curate, train, evaluate."""
