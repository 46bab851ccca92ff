"""The CRM assistant example: a declarative task (task.yaml) with one Python check (checks.py)."""
