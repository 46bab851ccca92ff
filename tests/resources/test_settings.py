"""Resources built from engine settings dataclasses: every field once, in the dataclass."""

import dataclasses
from dataclasses import dataclass, field

import dagster as dg
import pytest

from pipeline.engine.curate.examples import CurationOptions
from pipeline.engine.train.local.settings import LocalTrainerSettings
from pipeline.resources import CurationSettings, LocalTrainer
from pipeline.resources.settings import settings_resource


def schema_fields(resource: type[dg.ConfigurableResource]) -> dict:
    """Config field name -> (default, description), as the launchpad shows them."""
    config = resource.to_config_schema().as_field().config_type
    return {name: (f.default_value if f.default_provided else dataclasses.MISSING, f.description)
            for name, f in config.fields.items()}


def dataclass_fields(settings: type) -> dict:
    return {f.name: (f.default, f.metadata.get("doc")) for f in dataclasses.fields(settings)}


@pytest.mark.parametrize("resource, settings",
                         [(LocalTrainer, LocalTrainerSettings), (CurationSettings, CurationOptions)])
def test_config_fields_are_the_dataclass_fields(resource, settings):
    assert schema_fields(resource) == dataclass_fields(settings)
    assert resource().settings() == settings()


def test_a_field_added_to_the_dataclass_is_a_config_field():
    @dataclass(frozen=True)
    class Knobs:
        size: int
        name: str | None = field(default=None, metadata={"doc": "what it is called"})
        tags: list[str] | None = None

    resource = settings_resource(Knobs)
    assert schema_fields(resource) == {"size": (dataclasses.MISSING, None), "name": (None, "what it is called"),
                                       "tags": (None, None)}
    assert resource(size=3, tags=["a"]).settings() == Knobs(size=3, tags=["a"])


def test_trainer_fields_are_set_by_keyword_and_read_as_attributes():
    trainer = LocalTrainer(d_model=32, base_max_steps=3, lora_target_modules=["q"])
    assert (trainer.d_model, trainer.base_max_steps, trainer.seed, trainer.replay_examples) == (32, 3, 0, 1000)
    assert trainer.settings() == LocalTrainerSettings(d_model=32, base_max_steps=3, lora_target_modules=["q"])
    assert trainer.architecture().d_model == 32 and trainer.base_train_config().max_steps == 3


def test_materialize_takes_the_resources_from_code_or_from_run_config():
    seen = []

    @dg.asset
    def probe(trainer: LocalTrainer, curation: CurationSettings) -> None:
        seen.append((trainer.architecture().d_model, trainer.base_train_config().max_steps,
                     curation.config().splits.test))

    resources = {"trainer": LocalTrainer(d_model=16, base_max_steps=2), "curation": CurationSettings(test_share=0.2)}
    assert dg.materialize([probe], resources=resources).success
    launchpad = {"resources": {"trainer": {"config": {"d_model": 8}}, "curation": {"config": {"test_share": 0.3}}}}
    assert dg.materialize([probe], resources={"trainer": LocalTrainer(), "curation": CurationSettings()},
                          run_config=launchpad).success
    assert seen == [(16, 2, 0.2), (8, None, 0.3)]
