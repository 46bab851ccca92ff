"""Worked examples of teams' own tasks, importable from the repository root (``examples.<name>``)."""
