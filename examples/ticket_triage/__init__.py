"""ticket_triage: a team's own task (``task.py``), its data (``make_data.py``, ``data/``), its prompts
(``prompts/``) and its Dagster definitions (``definitions.py``). A walkthrough: docs/tasks.md."""
