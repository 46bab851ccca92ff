"""Hosted fine-tuning through the OpenAI fine-tuning API (OpenAI, Azure OpenAI or any
OpenAI-compatible server): client and errors (api), idempotent jobs and bounded following
(jobs), events and metrics (events), the registry rows (registry), one run from start to
finish (run), and inference with a hosted model behind the same interface as a local one
(inference). Never imports dagster.
"""
