"""Training runs for every backend: the fine_tuned_models registry (registry), the local backend
that trains open models here (local) and hosted fine-tuning APIs (hosted)."""
