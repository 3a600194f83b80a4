"""A primary's machine lost under load, with and without ``WEBHOOKS_ACK_REPLICAS`` (issue 20).

A primary, two replicas and three sentinels, real processes on loopback. The replication
stream reaches both replicas through a proxy that hands it on 0.4 s late; the producer posts
events with ids of its own (retrying a 5xx with the same ids); right after a 202 the primary is
SIGKILLed and the proxy drops whatever it still held, at one instant, as the loss of the
primary's machine would. The sentinels promote a replica.

With ``WEBHOOKS_ACK_REPLICAS=1`` every event the API acknowledged is on the promoted replica:
an answer waited for a replica to hold it. Without it, the events acknowledged within the lag
are missing from the new primary (the second test: the same run, so that the first can fail).
"""

from collections.abc import Callable

from tests.faults.scenario import Config, Report, assert_durable, xfail_if_only_orphans

Run = Callable[[Config], Report]


def _machine_loss(ack_replicas: int) -> Config:
    return Config(
        events=300,
        rate=40,
        kills=("primary",),
        sentinel=True,
        replicas=2,
        appendfsync="everysec",
        replication_delay_s=0.4,
        kill_window=(0.35, 0.45),
        ack_replicas=ack_replicas,
        ack_timeout_ms=5000,  # the lag is 0.4 s each way of a GETACK: well within
        concurrency=8,
    )


def test_with_ack_replicas_no_acknowledged_event_is_lost_with_the_primary_machine(scenario: Run) -> None:
    report = scenario(_machine_loss(ack_replicas=1))
    (kill,) = report.kills
    assert kill.back_s is not None, f"the sentinels did not promote a replica: {kill.note}"
    assert kill.recovered_s is not None, "the API must accept events again after the failover"
    assert report.replication_lost == 0, f"acknowledged events missing from the new primary: {kill.note}"
    xfail_if_only_orphans(report)
    assert_durable(report)


def test_without_ack_replicas_the_same_crash_loses_acknowledged_events(scenario: Run) -> None:
    report = scenario(_machine_loss(ack_replicas=0))
    (kill,) = report.kills
    assert kill.back_s is not None, f"the sentinels did not promote a replica: {kill.note}"
    assert report.replication_lost > 0, "events acknowledged within the lag must be missing"
