"""The annotation app: people review traces, decide good or bad, critique and correct them.

Start it with ``make annotate`` or ``flywheel-annotate`` (``python -m pipeline.annotate``).
"""
