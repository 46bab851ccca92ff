"""The incumbent: the model in production today, registered to be captured and compared with the
models trained here (fields from the engine's IncumbentSettings)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping

from pipeline.engine.evaluate.incumbent import IncumbentSettings
from pipeline.engine.providers.openai_chat import OpenAIChatProvider
from pipeline.resources.settings import settings_resource

#: Each setting ``name`` is read from the environment variable ``FLYWHEEL_INCUMBENT_<NAME>``.
ENV_PREFIX = "FLYWHEEL_INCUMBENT_"


class IncumbentResource(settings_resource(IncumbentSettings)):
    """The incumbent (fields declared in :class:`IncumbentSettings`): an OpenAI or Azure OpenAI
    model by name (a fine-tuned ``ft:...`` one included) or any OpenAI-compatible endpoint; none
    while ``model`` is None. No field holds the key: ``api_key_env`` names the variable it is
    read from."""

    @property
    def enabled(self) -> bool:
        return self.settings().enabled

    def chat(self) -> OpenAIChatProvider:
        return self.settings().chat()


def incumbent_from_env(environ: Mapping[str, str] = os.environ) -> IncumbentResource:
    """The incumbent the environment registers: each field from ``FLYWHEEL_INCUMBENT_<FIELD>``
    (e.g. FLYWHEEL_INCUMBENT_MODEL, FLYWHEEL_INCUMBENT_PROVIDER, FLYWHEEL_INCUMBENT_RECENT_DAYS),
    unset or empty ones at their defaults."""
    hints = typing.get_type_hints(IncumbentSettings)
    values = {}
    for f in dataclasses.fields(IncumbentSettings):
        variable = ENV_PREFIX + f.name.upper()
        raw = (environ.get(variable) or "").strip()
        if raw:
            values[f.name] = _parsed(raw, hints[f.name], variable)
    return IncumbentResource(**values)


def _parsed(raw: str, hint: typing.Any, variable: str) -> typing.Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kind = next(k for k in options if k is not type(None))
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r}: expected {kind.__name__}") from None
