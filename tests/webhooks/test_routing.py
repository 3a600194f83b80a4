import pytest

from webhooks.errors import Invalid
from webhooks.intake.routing import check_event_type, route


@pytest.mark.parametrize("ok", ["a", "invoice.paid", "A_1.b_2.c3", "x" * 256])
def test_valid_event_types(ok: str) -> None:
    assert check_event_type(ok) == ok


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b", "a b", "a-b", "é", "x" * 257, "a.*"])
def test_invalid_event_types(bad: str) -> None:
    with pytest.raises(Invalid, match="event type"):
        check_event_type(bad)


def test_route_picks_enabled_matching_endpoints_in_order() -> None:
    endpoints = [("e1", False, None), ("e2", True, None), ("e3", False, ["a.b"]), ("e4", False, ["c"])]
    assert route(endpoints, "a.b") == ["e1", "e3"]
    assert route(endpoints, "c") == ["e1", "e4"]
    assert route(endpoints, "zzz") == ["e1"]
