"""Hosted fine-tuning through the OpenAI fine-tuning API (OpenAI, Azure OpenAI or any
OpenAI-compatible server): client and errors (api), idempotent jobs and bounded following
(jobs), events and metrics (events), one run from start to finish (run).
"""
