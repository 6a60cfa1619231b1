"""The HTTP tier's parts that need no server: path vetting, shared metrics, limits, settings."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from evalsvc.api.inputs import resolve_data_path
from evalsvc.api.limits import InFlightSlots
from evalsvc.api.metrics import SharedMetrics, route_template
from evalsvc.api.server import serving_devices
from evalsvc.api.shared import ModelInfoSlot
from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.errors import Overloaded, PathNotAllowed
from evalsvc.settings import Settings


def test_paths_are_off_without_data_roots(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowed, match="turned off"):
        resolve_data_path("query", str(tmp_path / "a.wav"), [])


@pytest.mark.parametrize(
    "raw", ["../outside.wav", "/etc/passwd", "sub/../../outside.wav", "link.wav", "a\0b.wav"]
)
def test_paths_outside_the_roots_are_refused(tmp_path: Path, raw: str) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "link.wav").symlink_to(tmp_path / "outside.wav")
    with pytest.raises(PathNotAllowed):
        resolve_data_path("query", raw, [root])


def test_paths_inside_a_root_resolve(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    (second / "sub").mkdir(parents=True)
    first.mkdir()
    found = resolve_data_path("query", "sub/x.wav", [first, second])
    assert found.path.parent.name == "sub" and found.shown == "sub/x.wav"
    found = resolve_data_path("query", str(second / "sub" / "x.wav"), [first, second])
    assert found.path == second / "sub" / "x.wav" and found.shown == "sub/x.wav"  # messages hide the root


def _record(metrics: SharedMetrics) -> None:
    metrics.observe_request("/health", 200, 0.002)
    metrics.observe_batch_size(3)


def test_metrics_recorded_in_another_process_are_rendered_here() -> None:
    metrics = SharedMetrics(["/health", "/v1/score"])
    child = multiprocessing.get_context("fork").Process(target=_record, args=(metrics,))
    child.start()
    child.join(30)
    metrics.observe_request("/health", 200, 0.2)
    metrics.observe_request("/no/such/route", 404, 0.001)
    metrics.count_pairs(cache_hits=2, cache_misses=1)
    text = metrics.render(in_flight=5)
    assert 'evalsvc_http_requests_total{endpoint="/health",status="200"} 2' in text
    assert 'evalsvc_http_requests_total{endpoint="other",status="404"} 1' in text
    assert (
        'evalsvc_http_request_duration_seconds_bucket{endpoint="/health",status="200",le="0.005"} 1' in text
    )
    assert 'evalsvc_http_request_duration_seconds_bucket{endpoint="/health",status="200",le="+Inf"} 2' in text
    assert 'evalsvc_batch_size_bucket{le="4"} 1' in text and "evalsvc_batch_size_sum 3.0" in text
    assert "evalsvc_cache_hits_total 2" in text and "evalsvc_in_flight 5" in text


def test_endpoint_labels_are_route_templates() -> None:
    async def endpoint(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    routes = [Route("/v1/results/{result_id}", endpoint), Route("/v1/score", endpoint, methods=["POST"])]

    def scope(path: str, method: str = "GET") -> dict[str, object]:
        return {"type": "http", "path": path, "method": method, "root_path": ""}

    assert route_template(routes, scope("/v1/results/12")) == "/v1/results/{result_id}"
    assert route_template(routes, scope("/v1/score", "GET")) == "/v1/score"  # 405: still its route
    assert route_template(routes, scope("/../../etc")) == "other"


def test_in_flight_slots_bound_all_tenants_and_each_one() -> None:
    slots = InFlightSlots(bound=3, per_tenant=2)
    with slots.slot(1), slots.slot(1):
        with pytest.raises(Overloaded, match="tenant has 2"), slots.slot(1):
            pass
        with slots.slot(2):  # another tenant still gets the last slot
            assert slots.current == 3
            with pytest.raises(Overloaded, match="more than 3"), slots.slot(3):
                pass
    assert slots.current == 0
    with slots.slot(1):
        assert slots.current == 1


def _hold(slots: InFlightSlots, tenant: int, held: multiprocessing.synchronize.Event) -> None:
    with slots.slot(tenant):
        held.set()
        multiprocessing.get_context("fork").Event().wait(2)


def test_in_flight_slots_are_shared_by_forked_processes() -> None:
    slots = InFlightSlots(bound=1, per_tenant=1)
    context = multiprocessing.get_context("fork")
    held = context.Event()
    child = context.Process(target=_hold, args=(slots, 7, held))
    child.start()
    try:
        assert held.wait(30)
        with pytest.raises(Overloaded), slots.slot(8):
            pass
    finally:
        child.join(30)
    with slots.slot(8):
        assert slots.current == 1


def test_model_info_slot_round_trips_a_fingerprint() -> None:
    slot = ModelInfoSlot()
    assert slot.read() is None
    fingerprint = ModelFingerprint("m", None, "w", "a", "h", "p1", Decoding(max_new_tokens=9))
    slot.publish(fingerprint)
    assert slot.read() == fingerprint and slot.read().key == fingerprint.key  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("device", "per_replica", "expected"),
    [
        ("cpu", 1, ("cpu", [])),
        ("mps", 1, ("mps", [])),
        ("cuda:1", 1, ("cuda", [(1,)])),
        ("cuda:0,1,2,3,4,5,6,7", 2, ("cuda", [(0, 1), (2, 3), (4, 5), (6, 7)])),
        ("cuda:4,5,6,7", 4, ("cuda", [(4, 5, 6, 7)])),
    ],
)
def test_devices_map_to_litserve_gpu_sets(
    device: str, per_replica: int, expected: tuple[str, object]
) -> None:
    assert serving_devices(device, per_replica) == expected


def test_auth_is_on_by_default_and_off_only_on_loopback() -> None:
    assert Settings().auth_enabled is True
    assert Settings(auth_enabled=False, host="127.0.0.1").auth_enabled is False
    with pytest.raises(ValidationError, match="loopback"):
        Settings(auth_enabled=False, host="0.0.0.0")
    with pytest.raises(ValidationError, match="host"):
        Settings(host="example.org")
