"""What goes into training: the curation settings (fields from the engine's CurationOptions)."""

from pipeline.engine.curate.examples import CurationConfig, CurationOptions
from pipeline.resources.settings import settings_resource


class CurationSettings(settings_resource(CurationOptions)):
    """What goes into training: split shares (and the size check's tolerance), complexity bounds
    (unset: the task's ``complexity_bounds``), duplicates allowed per output, the cap on synthetic
    data per split, the near-duplicate threshold, and distillation: ``distill_from`` (the model
    whose outputs train and validation keep, e.g. the incumbent you are leaving) and
    ``distill_verified_only`` (only its outputs a person marked good)."""

    def config(self) -> CurationConfig:
        return self.settings().config()
