"""Finding and labelling failures: the task's assertions on every trace (assertions), repair at
inference time (heal), the LLM judge (judge) and its agreement with people (alignment), people's
decisions imported from files or made in the annotation app (annotations, review)."""
