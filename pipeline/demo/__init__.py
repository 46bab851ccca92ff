"""Deterministic generator of the bundled demo data (data/demo/) for the nl2query task.

- datasets: the fictional observability datasets, their columns and column kinds
- columns: the long column lists production sends (5 to 89 names, odd ones, empty ones)
- questions: sample a gold query for a dataset and phrase it as a question
- assistant: the simulated production assistant (gold -> raw output, with failure injection)
- production_logs: the two production prompts and how they were logged (chat logs, LangSmith runs)
- annotations: human-style review decisions on traces
- generate: ``write_demo_data(out_dir, seed)`` writes traces, annotations and the base corpus
"""

from pipeline.demo.datasets import BASE_DATASETS, DATASETS, TEAM_DATASETS, Column, Dataset, get_dataset
from pipeline.demo.generate import write_demo_data

__all__ = ["BASE_DATASETS", "DATASETS", "TEAM_DATASETS", "Column", "Dataset", "get_dataset",
           "write_demo_data"]
