"""The client's response models describe what the server's models (webhooks.models) serialise.

The client distribution cannot import the server, so it keeps its own copy of the shapes; this
checks, field by field, that the copy did not drift: same names, same required fields, same
enum values. The few open models (``extra="allow"``: a replay's progress) name a subset of the
server's fields and keep the rest.
"""

import enum
import typing

import pytest
from pydantic import BaseModel

import hookyard_client
import webhooks.models as server

SHARED = sorted(
    name for name in hookyard_client.models.__all__ if isinstance(getattr(server, name, None), type)
)


def shape(model: type[BaseModel]) -> dict[str, tuple[bool, str]]:
    """Each field's name -> (required, its annotation spelled without module names)."""
    out = {}
    for name, info in model.model_fields.items():
        text = (
            str(info.annotation)
            if typing.get_origin(info.annotation)
            else getattr(info.annotation, "__name__", "")
        )
        out[info.alias or name] = (
            info.is_required(),
            text.replace("webhooks.models.", "").replace("hookyard_client.models.", ""),
        )
    return out


def test_the_shared_models_are_the_server_s() -> None:
    assert {"Delivery", "DeliveryStatus", "Endpoint", "Event", "Tenant"} <= set(SHARED), SHARED


@pytest.mark.parametrize("name", SHARED)
def test_a_client_model_has_the_fields_of_the_server_s(name: str) -> None:
    ours, theirs = getattr(hookyard_client.models, name), getattr(server, name)
    if issubclass(theirs, enum.Enum):
        assert [m.value for m in ours] == [m.value for m in theirs]
    elif ours.model_config.get("extra") == "allow":
        assert set(shape(ours)) <= set(shape(theirs))  # names only: e.g. its state is any string
    else:
        assert shape(ours) == shape(theirs)
