"""From labelled traces to training data: curated examples and data versions (examples),
synthetic examples (synth), near-duplicates (dedup), group-aware splits (splits) and the
OpenAI chat JSONL training files (export)."""
