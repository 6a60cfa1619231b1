"""compose.yaml and the Dockerfile, checked without Docker: structure, start order, and that every
command a service runs exists in the `evalsvc` CLI."""

from __future__ import annotations

import importlib.util
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis

from evalsvc.bulk import worker_health as health
from evalsvc.bulk.rq_worker import ShardWorker
from evalsvc.cli import build_parser
from evalsvc.settings import Settings
from tests.helpers import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if service.get("image") == "evalsvc:latest"}


def test_the_services_of_the_distributed_setup() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker"}
    assert set(OURS) == {"migrate", "api", "worker"}
    assert all(service["build"] == "." for service in OURS.values())


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_command_exists_in_the_cli(name: str) -> None:
    args = build_parser().parse_args(OURS[name]["command"])  # exits (fails the test) on an unknown command
    assert callable(args.handler)


def test_health_checks_and_start_order() -> None:
    for name in ("postgres", "redis", "api", "worker"):
        assert SERVICES[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    api_check = SERVICES["api"]["healthcheck"]["test"]
    assert api_check[-1] == "http://127.0.0.1:8000/ready"
    assert SERVICES["worker"]["healthcheck"]["test"][1:] == ["python", "-m", "evalsvc.bulk.worker_health"]
    assert importlib.util.find_spec("evalsvc.bulk.worker_health") is not None

    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], (name, dependency)
            else:
                assert condition["condition"] == "service_completed_successfully"
                assert SERVICES[dependency]["restart"] == "no", "a one-shot step must not restart"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_api_has_the_gpu_and_workers_scale() -> None:
    [device] = SERVICES["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker and "ports" not in worker, "fixed names or ports prevent --scale"
    assert worker["environment"]["EVALSVC_MODEL_URL"] == "http://api:8000"


def test_settings_in_the_environment_are_real_settings() -> None:
    known = {f"EVALSVC_{name.upper()}" for name in Settings.model_fields}
    for name, service in OURS.items():
        unknown = set(service["environment"]) - known
        assert not unknown, (name, unknown)
    roots = OURS["api"]["environment"]["EVALSVC_DATA_ROOTS"]
    assert Settings.model_validate({"data_roots": yaml.safe_load(roots)}).data_roots == [Path("/data")]
    for service in OURS.values():
        assert any(volume.endswith(":/data:ro") for volume in service["volumes"])


def test_volumes_are_declared() -> None:
    used = {
        volume.split(":")[0]
        for service in SERVICES.values()
        for volume in service.get("volumes", [])
        if not volume.startswith(("$", ".", "/"))
    }
    assert used == set(COMPOSE["volumes"])


def test_the_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for source in sources.split():
            assert (REPO_ROOT / source).exists(), source
    assert 'ENTRYPOINT ["evalsvc"]' in dockerfile
    assert "pip install . " in dockerfile and "pip install -e" not in dockerfile  # migrations: package data


@pytest.mark.integration
def test_the_worker_healthcheck_sees_a_live_worker_of_its_host(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, bulk_queue="health-check")
    assert health.worker_alive(settings, socket.gethostname()) is False
    worker = ShardWorker(
        ["health-check"], connection=Redis.from_url(redis_url), heartbeat_ttl_s=5, max_worker_deaths=5
    )
    worker.register_birth()
    try:
        assert health.worker_alive(settings, socket.gethostname()) is True
        assert health.worker_alive(settings, "another-host") is False
    finally:
        worker.register_death()
    assert health.worker_alive(settings, socket.gethostname()) is False


@pytest.mark.integration
def test_the_worker_healthcheck_fails_while_the_database_is_unreachable(
    redis_url: str, database_url: str
) -> None:
    settings = Settings(redis_url=redis_url, bulk_queue="health-check", database_url=database_url)
    worker = ShardWorker(
        ["health-check"], connection=Redis.from_url(redis_url), heartbeat_ttl_s=5, max_worker_deaths=5
    )
    worker.register_birth()
    try:
        assert health.unhealthy_reason(settings, socket.gethostname()) is None
        unreachable = settings.model_copy(
            update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/x"}
        )
        reason = health.unhealthy_reason(unreachable, socket.gethostname())
        assert reason is not None and reason.startswith("database_unavailable: ")
    finally:
        worker.register_death()
    reason = health.unhealthy_reason(settings, socket.gethostname())
    assert reason == f"no bulk worker of host {socket.gethostname()} is registered on queue health-check"
