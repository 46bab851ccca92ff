"""Resources whose config fields come from an engine settings dataclass, so each setting is
declared once: in the dataclass (name, type, default, and the ``doc`` field metadata, shown as
the field's description in the launchpad)."""

import dataclasses
import types
import typing
from typing import Any

import dagster as dg
from pydantic import Field


def settings_resource(settings: type) -> type[dg.ConfigurableResource]:
    """A ConfigurableResource base class with one config field per field of the dataclass
    ``settings``, and ``settings()``: the configured values as that dataclass."""
    hints = typing.get_type_hints(settings)
    fields = dataclasses.fields(settings)

    def as_settings(self) -> Any:
        return settings(**{f.name: getattr(self, f.name) for f in fields})

    as_settings.__doc__ = f"The configured values as {settings.__name__}."

    def body(namespace: dict[str, Any]) -> None:
        namespace["__module__"] = __name__
        namespace["__annotations__"] = {f.name: hints[f.name] for f in fields}
        for f in fields:
            default = {} if f.default is dataclasses.MISSING else {"default": f.default}
            namespace[f.name] = Field(**default, description=f.metadata.get("doc"))
        namespace["settings"] = as_settings

    return types.new_class(f"{settings.__name__}Fields", (dg.ConfigurableResource,), exec_body=body)
