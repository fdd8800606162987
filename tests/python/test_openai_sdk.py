"""The official `openai` SDK against Model Router and against the simulator.

If a header, a field or the SSE framing were off, the SDK would fail to parse
or raise the wrong exception class.
"""

import json
import urllib.request

import openai
import pytest
from openai import OpenAI

MESSAGES = [{"role": "user", "content": "Say hello to the SDK"}]


def client(router, **kwargs):
    url, key = router
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, **kwargs)


def sim_admin(router, method, body=None):
    url, _ = router
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/sim/_sim/faults", data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_chat_completion_with_routing_headers(router):
    raw = client(router).chat.completions.with_raw_response.create(model="standard", messages=MESSAGES, extra_body={"prefer": "quality"})
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == raw.headers["x-model-router-model"]
    assert raw.headers["x-model-router-provider"]
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-model-router-cost"]) > 0
    assert "Say hello to the SDK" in completion.choices[0].message.content
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_stream_ends_with_usage_and_cost(router):
    stream = client(router).chat.completions.create(model="economy", messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Say hello to the SDK" in text
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.usage.model_dump()["cost"] == "0", "economy/balanced lands on a free model"
    assert all(c.model == chunks[0].model for c in chunks)


def test_stream_tool_calls_parse(router):
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
    stream = client(router).chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES, tools=tools, stream=True)
    arguments, name = "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name = name or call.function.name
                arguments += call.function.arguments or ""
    assert name == "get_time"
    assert json.loads(arguments) == {"tz": "sample"}


def test_models_list_and_retrieve(router):
    c = client(router)
    ids = {m.id for m in c.models.list()}
    assert {"economy", "standard", "premium", "gpt-4.1", "claude-sonnet-4-6"} <= ids
    assert c.models.retrieve("gpt-4.1").owned_by == "openai"


def test_errors_raise_the_sdk_exception_classes(router):
    c = client(router)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-9000", messages=MESSAGES)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="economy", messages=MESSAGES, extra_body={"prefer": "slow"})
    assert e.value.param == "prefer"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="grok-3", messages=[{"role": "user", "content": " hello" * 150_000}])
    assert e.value.code == "context_length_exceeded"
    url, _ = router
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{url}/v1", api_key="mr_sk_" + "x" * 40, max_retries=0).models.list()


def test_outages_raise_rate_limit_and_server_errors(router):
    providers = ["openai", "xai", "groq", "cerebras", "anthropic", "google", "bedrock"]
    try:
        for provider in providers:
            sim_admin(router, "POST", {"provider": provider, "status": 503})
        with pytest.raises(openai.InternalServerError) as e:
            client(router).chat.completions.create(model="economy", messages=MESSAGES)
        assert e.value.status_code == 503
        assert len(e.value.body["attempts"]) == 11
        # Last: a 429 with Retry-After leaves each model alone for that long.
        for provider in providers:
            sim_admin(router, "POST", {"provider": provider, "status": 429, "retry_after_s": 2})
        with pytest.raises(openai.RateLimitError) as e:
            client(router).chat.completions.create(model="economy", messages=MESSAGES)
        assert e.value.response.headers["retry-after"] == "2"
    finally:
        sim_admin(router, "DELETE")


@pytest.mark.parametrize("prefix,model", [("/openai/v1", "gpt-4.1"), ("/xai/v1", "grok-3"), ("/groq/openai/v1", "llama-3.3-70b-versatile"), ("/cerebras/v1", "llama3.1-8b")])
def test_simulator_speaks_each_openai_dialect(simulator, prefix, model):
    sim = OpenAI(base_url=f"{simulator}{prefix}", api_key="sim-key", max_retries=0)
    completion = sim.chat.completions.create(model=model, messages=MESSAGES, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    chunks = list(sim.chat.completions.create(model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == completion.usage.prompt_tokens
    assert model in {m.id for m in sim.models.list()}
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{simulator}{prefix}", api_key="wrong", max_retries=0).models.list()
