"""HostSlots: at most ``per_host`` holders per origin, the rest wait in order; idle hosts forgotten."""

import asyncio

from webhooks.outbound.hostslots import HostSlots, origin


def test_origin_is_scheme_host_and_port_with_defaults() -> None:
    assert origin("https://Hooks.Example.com/a?b=1") == ("https", "hooks.example.com", 443)
    assert origin("http://hooks.example.com/a") == ("http", "hooks.example.com", 80)
    assert origin("https://hooks.example.com:8443/a") == ("https", "hooks.example.com", 8443)
    assert origin("https://hooks.example.com/a") != origin("http://hooks.example.com/a")


def test_a_host_has_at_most_per_host_holders_and_others_are_not_held_back() -> None:
    async def scenario() -> None:
        slots = HostSlots(2)
        holding = 0
        peak = 0
        waited: list[bool] = []

        async def one(url: str) -> None:
            nonlocal holding, peak
            async with slots.slot(url) as was_waiting:
                waited.append(was_waiting)
                holding += 1
                peak = max(peak, holding)
                await asyncio.sleep(0.01)
                holding -= 1

        busy = [asyncio.create_task(one(f"https://a.example/{i}")) for i in range(6)]
        await asyncio.sleep(0)
        assert slots.busy("https://a.example/x") == 6  # 2 holding, 4 waiting
        async with slots.slot("https://b.example/") as other_waited:  # another host: no wait
            assert not other_waited
        await asyncio.gather(*busy)
        assert peak == 2
        assert waited.count(False) == 2 and waited.count(True) == 4
        assert slots.busy("https://a.example/x") == 0 and not slots._hosts  # forgotten when idle

    asyncio.run(scenario())


def test_zero_means_no_bound() -> None:
    async def scenario() -> int:
        slots = HostSlots(0)
        async with slots.slot("https://a.example/"), slots.slot("https://a.example/") as waited:
            assert not waited
        return len(slots._hosts)

    assert asyncio.run(scenario()) == 0
