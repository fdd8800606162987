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


def sim_admin(router, operator_key, method, body=None):
    url, _ = router
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "authorization": f"Bearer {operator_key}"}
    request = urllib.request.Request(f"{url}/sim/_sim/faults", data=data, method=method, headers=headers)
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
    assert completion.usage.model_dump()["cost"] == raw.headers["x-model-router-cost"], "the body carries the cost"


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


def test_every_tier_model_answers_when_pinned(router):
    """The product's catalog (39 chat models in three tiers) is routable in
    simulator mode: each id, pinned, is served by itself, with its provider
    and its price source listed."""
    c = client(router)
    models = [m for m in c.models.list() if m.model_extra.get("type") == "model" and m.model_extra.get("tier")]
    assert len(models) == 39
    tiers = {t: c.models.retrieve(t).model_extra["models"] for t in ("economy", "standard", "premium")}
    assert (len(tiers["economy"]), len(tiers["standard"]), len(tiers["premium"])) == (14, 20, 5)
    for model in models:
        assert model.model_extra["pricing_source"].startswith("https://"), model.id
        raw = c.chat.completions.with_raw_response.create(model=model.id, messages=MESSAGES, max_tokens=20)
        assert raw.parse().model == model.id == raw.headers["x-model-router-model"]
        assert raw.headers["x-model-router-provider"] == model.owned_by


def test_errors_raise_the_sdk_exception_classes(router):
    c = client(router)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-9000", messages=MESSAGES)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="economy", messages=MESSAGES, extra_body={"prefer": "slow"})
    assert e.value.param == "prefer"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="grok-3-beta", messages=[{"role": "user", "content": " hello" * 150_000}])
    assert e.value.code == "context_length_exceeded"
    url, _ = router
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{url}/v1", api_key="mr_sk_" + "x" * 40, max_retries=0).models.list()


def test_outages_raise_rate_limit_and_server_errors(router, operator_key):
    providers = ["openai", "xai", "groq", "cerebras", "anthropic", "google", "bedrock"]
    try:
        for provider in providers:
            sim_admin(router, operator_key, "POST", {"provider": provider, "status": 503})
        with pytest.raises(openai.InternalServerError) as e:
            client(router).chat.completions.create(model="economy", messages=MESSAGES)
        assert e.value.status_code == 503
        assert len(e.value.body["attempts"]) == 14
        # Last: a 429 with Retry-After leaves each model alone for that long.
        for provider in providers:
            sim_admin(router, operator_key, "POST", {"provider": provider, "status": 429, "retry_after_s": 2})
        with pytest.raises(openai.RateLimitError) as e:
            client(router).chat.completions.create(model="economy", messages=MESSAGES)
        assert e.value.response.headers["retry-after"] == "2"
    finally:
        sim_admin(router, operator_key, "DELETE")


@pytest.mark.parametrize("prefix,model", [("/openai/v1", "gpt-4.1"), ("/xai/v1", "grok-3-beta"), ("/groq/openai/v1", "llama-3.3-70b-versatile"), ("/cerebras/v1", "llama3.1-8b")])
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


def test_embeddings_float_and_base64_agree(router):
    """`embeddings.create` in both encodings: the SDK decodes base64 itself."""
    import struct

    inputs = ["the first document", "the second document", "a query"]
    raw = client(router).embeddings.with_raw_response.create(model="embed-small", input=inputs, encoding_format="float")
    floats = raw.parse()
    assert floats.model == raw.headers["x-model-router-model"] == "text-embedding-3-small"
    assert raw.headers["x-model-router-provider"] == "openai"
    assert float(raw.headers["x-model-router-cost"]) > 0
    assert [e.index for e in floats.data] == [0, 1, 2]
    assert all(len(e.embedding) == 1536 for e in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    assert floats.usage.model_dump()["cost"] == raw.headers["x-model-router-cost"]

    encoded = client(router).embeddings.create(model="embed-small", input=inputs, encoding_format="base64")
    for f, b in zip(floats.data, encoded.data):
        # The SDK hands back base64 as a string when asked for it explicitly.
        vector = b.embedding
        if isinstance(vector, str):
            import base64

            raw_bytes = base64.b64decode(vector)
            vector = list(struct.unpack(f"<{len(raw_bytes) // 4}f", raw_bytes))
        as_f32 = [struct.unpack("<f", struct.pack("<f", x))[0] for x in f.embedding]
        assert vector == as_f32

    # Without encoding_format the SDK asks for base64 and decodes it to floats.
    default = client(router).embeddings.create(model="embed-titan", input="a query", dimensions=256)
    assert default.model == "titan-embed-text-v2"
    assert len(default.data[0].embedding) == 256
    norm = sum(x * x for x in default.data[0].embedding) ** 0.5
    assert abs(norm - 1.0) < 1e-4


def test_embeddings_errors_raise_the_sdk_exceptions(router):
    with pytest.raises(openai.BadRequestError) as bad:
        client(router).embeddings.create(model="embed-titan", input="x", dimensions=4096)
    assert bad.value.body["param"] == "dimensions"
    with pytest.raises(openai.NotFoundError):
        client(router).embeddings.create(model="embed-medium", input="x")
