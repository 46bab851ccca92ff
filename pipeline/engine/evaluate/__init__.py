"""Judging models on the test split: scoring, paired comparisons and verdicts (scoring), the
eval report as markdown (report) and as HTML with a chart (report_html)."""
