"""A primary's machine lost under load, with and without ``WEBHOOKS_ACK_REPLICAS`` (issue 20).

A primary, two replicas and three sentinels, real processes on loopback. The replication
stream reaches both replicas through a proxy that hands it on 0.4 s late; the producer posts
events with ids of its own (retrying a 5xx with the same ids); right after a 202 the primary is
SIGKILLed and the proxy drops whatever it still held, at one instant, as the loss of the
primary's machine would. The sentinels promote a replica.

With ``WEBHOOKS_ACK_REPLICAS=1`` every event the API acknowledged is on the promoted replica:
an answer waited for a replica to hold it. Without it, the events acknowledged within the lag
are missing from the new primary (the second test: the same run, so that the first can fail).

With one replica, the promoted replica has none of its own: nothing is acknowledged (503
``replication_timeout``, the write kept) until the old primary is back as its replica (the third).
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.faults.cluster import ADMIN_TOKEN, Fleet, SentinelCluster, platform_env, stable_port, wait_until
from tests.faults.scenario import Config, Report, assert_durable, xfail_if_only_orphans
from webhooks import keys

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


def test_with_one_replica_nothing_is_acknowledged_after_the_failover_until_a_replica_is_back(
    tmp_path: Path,
) -> None:
    """``WEBHOOKS_ACK_REPLICAS=1`` with one replica: once it is promoted it has no replica of its
    own, so every write answers 503 ``replication_timeout`` (kept on the primary, never a 202 that
    one machine alone holds) until the old primary is back as its replica; then the retry is 202."""
    cluster = SentinelCluster(tmp_path / "redis", replicas=1)
    env = platform_env(
        api_port=stable_port(),
        sentinels=cluster.addresses,
        sentinel_master=cluster.master_name,
        extra={"WEBHOOKS_ACK_REPLICAS": "1", "WEBHOOKS_ACK_TIMEOUT_MS": "500"},
    )
    fleet = Fleet(env, tmp_path / "logs", workers=0, standalone_scheduler=False)
    answers: Counter[str] = Counter()
    try:
        cluster.start()
        fleet.start()
        with httpx.Client(base_url=fleet.api_url, timeout=10) as api:
            resp = api.post(
                "/v1/tenants", json={"name": "one"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            assert resp.status_code == 201, resp.text
            tenant_id = resp.json()["id"]
            auth = {"Authorization": f"Bearer {resp.json()['api_key']}"}

            def post(eid: str) -> httpx.Response:
                answer = api.post(
                    "/v1/events", json={"id": eid, "event_type": "t.x", "payload": {}}, headers=auth
                )
                answers[f"{answer.status_code} {answer.json().get('error', '')}".strip()] += 1
                return answer

            assert post("before").status_code == 202
            before = cluster.master_address()
            cluster.crash_primary()
            promoted = wait_until(lambda: (a := cluster.master_address()) != before and a, 30, "a promotion")

            # Until the API reaches the new primary its answers are 503 storage_unavailable; from
            # then on 503 replication_timeout: the write is on the new primary, alone.
            refused = wait_until(
                lambda: (a := post("alone")).json().get("error") == "replication_timeout" and a,
                30,
                "the refusal",
            )
            assert isinstance(refused, httpx.Response) and "Retry-After" in refused.headers
            new_primary = cluster.master_client()
            assert new_primary.exists(keys.event(tenant_id, "alone")), "the write stays on the primary"

            # The old primary's machine comes back: the sentinels make it a replica of the new one.
            cluster.primary.start()
            accepted = wait_until(lambda: (a := post("alone")).status_code == 202 and a, 60, "a replica back")
            assert isinstance(accepted, httpx.Response) and accepted.json()["id"] == "alone"
            assert answers["202"] == 2, answers  # "before" and the retry once a replica had it
            assert set(answers) <= {"202", "503 replication_timeout", "503 storage_unavailable"}, answers
            new_primary.close()
        print(f"promoted {promoted}; answers {dict(answers)}")
    finally:
        fleet.stop()
        cluster.stop()
