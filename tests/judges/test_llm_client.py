"""The LLM client against a scripted OpenAI-compatible server on loopback: what goes on the wire,
the ledger row of each call, structured-output fallback, retries, and one error code per failure."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from evalsvc.errors import (
    LLMAuthFailed,
    LLMModelUnavailable,
    LLMRateLimited,
    LLMRequestRejected,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
)
from evalsvc.judges.replies import MosReply, response_format
from evalsvc.llm_client import LLMClient, LLMConfig, Prices
from evalsvc.settings import Settings
from tests.judges.conftest import MODEL, ClientFactory
from tests.judges.openai_server import Failure, Hang, Reply, ScriptedOpenAI, free_port

MESSAGES = ({"role": "system", "content": "judge"}, {"role": "user", "content": "rate it"})
SCHEMA = response_format(MosReply)


def test_request_carries_the_model_decoding_format_and_key(llm: ClientFactory) -> None:
    with llm(api_key="sk-test", seed=7) as (client, server):
        reply = client.complete(MESSAGES, SCHEMA)
    body = server.requests[0]
    assert body["model"] == MODEL
    assert body["messages"] == list(MESSAGES)
    assert body["temperature"] == 0.0 and body["seed"] == 7
    assert body["max_completion_tokens"] == 1024
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["properties"]["score"]["enum"] == [1, 2, 3, 4, 5]
    assert server.authorizations == ["Bearer sk-test"]
    assert reply.call.output_mode == "json_schema" and reply.call.model == MODEL


def test_a_server_without_keys_gets_a_placeholder(llm: ClientFactory) -> None:
    with llm(api_key=None) as (client, server):
        client.complete(MESSAGES, SCHEMA)
    assert server.authorizations == ["Bearer EMPTY"]


def test_usage_and_cost_are_recorded_per_call(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(lambda body, n: Reply('{"score": 4}', prompt_tokens=1200, completion_tokens=30))
    with llm(server, prices=Prices(input_per_1m=2.5, output_per_1m=10.0)) as (client, _):
        call = client.complete(MESSAGES, SCHEMA).call
    assert (call.prompt_tokens, call.completion_tokens) == (1200, 30)
    assert call.cost_usd == pytest.approx((1200 * 2.5 + 30 * 10.0) / 1e6)
    assert call.finish_reason == "stop" and call.system_fingerprint == "fp_scripted"
    assert call.response_id == "chatcmpl-1" and call.latency_ms > 0


def test_unknown_prices_give_no_cost_rather_than_zero(llm: ClientFactory) -> None:
    with llm(prices=Prices()) as (client, _):
        assert client.complete(MESSAGES, SCHEMA).call.cost_usd is None


def _rejects_formats(*rejected: str) -> Any:
    def script(body: dict[str, Any], _: int) -> Reply | Failure:
        kind = (body.get("response_format") or {}).get("type", "text")
        if kind in rejected:
            return Failure(400, f"Invalid parameter: 'response_format' of type '{kind}' is not supported")
        return Reply('{"score": 3}')

    return script


def test_auto_steps_down_to_json_object_then_text_and_remembers(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(_rejects_formats("json_schema", "json_object"))
    with llm(server, structured_output="auto") as (client, _):
        first = client.complete(MESSAGES, SCHEMA)
        second = client.complete(MESSAGES, SCHEMA)
    kinds = [(body.get("response_format") or {}).get("type", "text") for body in server.requests]
    assert kinds == ["json_schema", "json_object", "text", "text"]
    assert first.call.output_mode == second.call.output_mode == client.output_mode == "text"


def test_a_fixed_format_is_never_stepped_down(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(_rejects_formats("json_schema"))
    with llm(server, structured_output="json_schema") as (client, _), pytest.raises(LLMRequestRejected):
        client.complete(MESSAGES, SCHEMA)
    assert len(server.requests) == 1


def test_other_bad_requests_reject_the_item_without_changing_the_format(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(
        lambda body, n: Failure(400, "This model's maximum context length is 8192 tokens")
    )
    with llm(server) as (client, _):
        with pytest.raises(LLMRequestRejected, match="maximum context length") as caught:
            client.complete(MESSAGES, SCHEMA)
        assert client.output_mode == "json_schema"
    assert caught.value.code == "llm_request_rejected" and len(server.requests) == 1


def test_json_object_and_off_modes(llm: ClientFactory) -> None:
    with llm(structured_output="json_object") as (client, server):
        client.complete(MESSAGES, SCHEMA)
    assert server.requests[0]["response_format"] == {"type": "json_object"}
    with llm(structured_output="off") as (client, server):
        client.complete(MESSAGES, SCHEMA)
    assert "response_format" not in server.requests[0]


def test_a_429_storm_is_retried_then_reported(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(lambda body, n: Failure(429, "Rate limit reached", {"retry-after-ms": "5"}))
    with (
        llm(server, max_retries=3) as (client, _),
        pytest.raises(LLMRateLimited, match="after 3 retries") as caught,
    ):
        client.complete(MESSAGES, SCHEMA)
    assert len(server.requests) == 4
    assert caught.value.code == "llm_rate_limited" and caught.value.http_status == 429


def test_a_passing_429_burst_is_absorbed_by_the_retries(llm: ClientFactory) -> None:
    def script(body: dict[str, Any], n: int) -> Failure | Reply:
        return Failure(429, "slow down", {"retry-after-ms": "5"}) if n < 2 else Reply('{"score": 5}')

    with llm(ScriptedOpenAI(script), max_retries=3) as (client, server):
        assert json.loads(client.complete(MESSAGES, SCHEMA).text or "") == {"score": 5}
    assert len(server.requests) == 3


def test_5xx_storm_is_a_server_error(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(lambda body, n: Failure(503, "overloaded", {"retry-after-ms": "1"}))
    with llm(server, max_retries=2) as (client, _), pytest.raises(LLMServerError, match="503") as caught:
        client.complete(MESSAGES, SCHEMA)
    assert len(server.requests) == 3 and caught.value.http_status == 502


def test_a_server_that_does_not_answer_times_out_after_retries(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(lambda body, n: Hang(10.0))
    with llm(server, timeout_s=0.3, max_retries=1) as (client, _):
        started = time.monotonic()
        with pytest.raises(LLMTimeout) as caught:
            client.complete(MESSAGES, SCHEMA)
        assert time.monotonic() - started < 5.0  # two 0.3 s attempts and a backoff, not the 10 s hang
    assert len(server.requests) == 2
    assert caught.value.code == "llm_timeout" and caught.value.http_status == 504


def test_a_closed_port_is_unreachable() -> None:
    config = LLMConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL, max_retries=0)
    client = LLMClient(config, None)
    with pytest.raises(LLMUnreachable, match="cannot connect") as caught:
        client.complete(MESSAGES, SCHEMA)
    assert caught.value.code == "llm_unreachable" and caught.value.http_status == 502


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, LLMAuthFailed, "llm_auth_failed"),
        (404, LLMModelUnavailable, "llm_model_unavailable"),
        (403, LLMModelUnavailable, "llm_model_unavailable"),
    ],
)
def test_key_and_model_refusals_have_their_codes(
    llm: ClientFactory, status: int, error: type, code: str
) -> None:
    server = ScriptedOpenAI(lambda body, n: Failure(status, "no"))
    with llm(server, max_retries=3) as (client, _), pytest.raises(error) as caught:
        client.complete(MESSAGES, SCHEMA)
    assert caught.value.code == code and caught.value.http_status == 503
    assert len(server.requests) == 1  # not retried


def test_check_finds_an_unknown_model_before_any_call(llm: ClientFactory) -> None:
    with llm(ScriptedOpenAI(models=("gpt-4o", "gpt-4o-mini"))) as (client, server):
        with pytest.raises(LLMModelUnavailable, match=r"judge-model.*gpt-4o, gpt-4o-mini"):
            client.check()
        assert server.requests == []
    with llm() as (client, _):
        client.check()  # served: passes


def test_concurrency_is_bounded_across_threads(llm: ClientFactory) -> None:
    server = ScriptedOpenAI(latency_s=0.05)
    with llm(server, concurrency=3) as (client, _):
        tasks = [lambda: client.complete(MESSAGES, SCHEMA) for _ in range(12)]
        extra = threading.Thread(target=lambda: client.run_all(tasks[:6]))
        extra.start()
        client.run_all(tasks)
        extra.join()
    assert len(server.requests) == 18
    assert server.max_in_flight == 3


def test_run_all_keeps_order_and_stops_at_a_fatal_error(llm: ClientFactory) -> None:
    with llm() as (client, _):
        assert client.run_all([lambda i=i: i for i in range(20)]) == list(range(20))
        ran: list[int] = []

        def task(i: int) -> int:
            if i == 0:
                raise LLMAuthFailed("bad key")
            time.sleep(0.01)
            ran.append(i)
            return i

        with pytest.raises(LLMAuthFailed):
            client.run_all([lambda i=i: task(i) for i in range(200)])
    assert len(ran) < 199  # what had not started was cancelled


def test_client_from_settings_reads_only_settings() -> None:
    settings = Settings(
        llm_base_url="http://127.0.0.1:9/v1/",
        llm_model="qwen",
        llm_api_key="sk-x",
        llm_price_input_per_1m=1.0,
        llm_price_output_per_1m=2.0,
        llm_seed=None,
    )
    client = LLMClient.from_settings(settings)
    assert client.config.base_url == "http://127.0.0.1:9/v1"
    assert client.config.prices == Prices(1.0, 2.0)
    assert client.config.decoding() == {
        "temperature": 0.0,
        "seed": None,
        "max_tokens": 1024,
        "structured_output": "auto",
    }
    assert "sk-x" not in repr(settings)
