"""The official `anthropic` and `openai` SDKs, unmodified, against the
router's Anthropic Messages (`/v1/messages`) and OpenAI Responses
(`/v1/responses`) ingresses on `modelrouter up`.

Each ingress translates to chat and is routed to any provider, so every test
runs against models of several upstream providers: the SDK must parse what
the router made of an OpenAI, a Gemini, an Anthropic and a Bedrock answer.
"""

import json
import urllib.error
import urllib.request

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

# One model per upstream provider (pinned), plus a tier.
MODELS = ["claude-haiku-4-5", "gpt-4.1-mini", "gemini-2.5-flash", "qwen.qwen3-32b-v1:0"]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_FN = {"type": "function", "name": "get_weather", "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}


def claude(router, **kwargs):
    url, key = router
    # Anthropic's clients send the key as `x-api-key`; base URL without /v1.
    return Anthropic(base_url=url, api_key=key, max_retries=0, **kwargs)


def oai(router):
    url, key = router
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def ask(text="What is a model router?"):
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- Messages


@pytest.mark.parametrize("model", MODELS)
def test_messages_create_on_each_provider(router, model):
    raw = claude(router).messages.with_raw_response.create(model=model, max_tokens=200, system="You are terse.", messages=ask())
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_") and message.role == "assistant" and message.model == model
    assert raw.headers["x-model-router-model"] == model
    assert message.content[0].type == "text" and "What is a model router?" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert float(raw.headers["x-model-router-cost"]) > 0


def test_messages_routes_tiers_and_reads_prefer(router):
    raw = claude(router).messages.with_raw_response.create(model="standard", max_tokens=100, messages=ask(), extra_body={"prefer": "cheap"})
    assert raw.headers["x-model-router-model"] == raw.parse().model
    auto = claude(router).messages.with_raw_response.create(model="auto", max_tokens=100, messages=ask("hi"))
    assert auto.headers["x-model-router-auto-tier"] in {"economy", "standard", "premium"}


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_accumulates_into_the_same_message(router, model):
    c = claude(router)
    whole = c.messages.create(model=model, max_tokens=200, messages=ask())
    with c.messages.stream(model=model, max_tokens=200, messages=ask()) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.stop_reason == "end_turn" and final.model == model


@pytest.mark.parametrize("model", MODELS)
def test_messages_tool_round_trip(router, model):
    c = claude(router)
    first = c.messages.create(model=model, max_tokens=300, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and "city" in call.input
    with c.messages.stream(model=model, max_tokens=300, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice={"type": "any"}) as stream:
        streamed = stream.get_final_message()
    streamed_call = next(block for block in streamed.content if block.type == "tool_use")
    assert streamed_call.name == "get_weather" and streamed_call.input == call.input
    follow_up = [
        *ask("Weather in Oslo?"),
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 degrees, rain"}]},
    ]
    second = c.messages.create(model=model, max_tokens=300, messages=follow_up, tools=[WEATHER])
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


def test_messages_thinking_comes_back_when_the_model_gives_it(router):
    c = claude(router)
    kwargs = dict(model="claude-sonnet-4-6", max_tokens=2000, messages=ask(), thinking={"type": "enabled", "budget_tokens": 1024})
    whole = c.messages.create(**kwargs)
    with c.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
    for message in (whole, streamed):
        assert [b.type for b in message.content] == ["thinking", "text"], message
        assert message.content[0].thinking
    assert streamed.content[0].thinking == whole.content[0].thinking


def test_messages_count_tokens(router):
    c = claude(router)
    short = c.messages.count_tokens(model="claude-haiku-4-5", messages=ask("hi"))
    long = c.messages.count_tokens(model="standard", system="You are terse.", messages=ask("hi " * 500), tools=[WEATHER])
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="claude-nonexistent", messages=ask())


def test_messages_prompt_cache_marks_reach_anthropic_and_bill_at_cache_rates(router):
    c = claude(router)
    system = [{"type": "text", "text": "You are a careful assistant. " * 300, "cache_control": {"type": "ephemeral"}}]
    first = c.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=50, system=system, messages=ask())
    second = c.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=50, system=system, messages=ask("Another question"))
    written, read = first.parse().usage, second.parse().usage
    assert written.cache_creation_input_tokens > 1000, written
    assert read.cache_read_input_tokens > 1000, read
    # A cache read costs a tenth of the input rate: the second call is cheaper.
    assert float(second.headers["x-model-router-cost"]) < float(first.headers["x-model-router-cost"])


def test_messages_errors_come_in_anthropics_envelope(router):
    url, _ = router
    with pytest.raises(anthropic.AuthenticationError) as auth:
        Anthropic(base_url=url, api_key="mr_sk_wrong", max_retries=0).messages.create(model="standard", max_tokens=10, messages=ask())
    assert auth.value.body["type"] == "error" and auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude(router).messages.create(model="claude-nonexistent", max_tokens=10, messages=ask())
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert "claude-nonexistent" in missing.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude(router).messages.create(model="standard", max_tokens=10, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    # The SDK will not send a request without `max_tokens`; a raw client can.
    url, key = router
    body = json.dumps({"model": "standard", "messages": ask()}).encode()
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    with pytest.raises(urllib.error.HTTPError) as no_max:
        urllib.request.urlopen(urllib.request.Request(f"{url}/v1/messages", data=body, headers=headers), timeout=10)
    assert no_max.value.code == 400
    error = json.loads(no_max.value.read())
    assert error["type"] == "error" and "max_tokens" in error["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as unknown_fallback:
        claude(router).messages.create(model="standard", max_tokens=10, messages=ask(), extra_body={"models": ["gpt-4.1", "no-such-model"]})
    assert "no-such-model" in unknown_fallback.value.body["error"]["message"]


def test_messages_bearer_key_works_as_claude_code_sends_it(router):
    url, key = router
    c = Anthropic(base_url=url, auth_token=key, max_retries=0)
    message = c.messages.create(model="standard", max_tokens=50, messages=ask(), extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert message.content[0].type == "text"


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4.1", "gemini-2.5-pro", "standard"])
def test_a_claude_code_shaped_request_streams(router, model):
    """What Claude Code sends: system blocks and tools with cache marks, a
    user id, thinking, beta headers, a stream."""
    url, key = router
    c = Anthropic(base_url=url, auth_token=key, max_retries=0, default_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})
    system = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Follow the repository's conventions. " * 200, "cache_control": {"type": "ephemeral"}},
    ]
    tools = [dict(WEATHER), {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}, "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "List the files", "cache_control": {"type": "ephemeral"}}]}]
    with c.messages.stream(model=model, max_tokens=2048, system=system, tools=tools, messages=messages, metadata={"user_id": "user_abc_session_1"}, thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    assert final.stop_reason in {"end_turn", "tool_use"}
    assert any(block.type in {"text", "tool_use"} for block in final.content)
    assert final.usage.output_tokens > 0


# ---------------------------------------------------------------- Responses


@pytest.mark.parametrize("model", MODELS)
def test_responses_create_on_each_provider(router, model):
    raw = oai(router).responses.with_raw_response.create(model=model, instructions="Be terse.", input="What is a model router?", store=False)
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.model == model == raw.headers["x-model-router-model"]
    assert "What is a model router?" in response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.store is False


def test_responses_multi_turn_input(router):
    turns = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
    ]
    response = oai(router).responses.create(model="standard", input=turns)
    assert "What is my name?" in response.output_text


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_ends_with_the_completed_response(router, model):
    c = oai(router)
    whole = c.responses.create(model=model, input="What is a model router?")
    events = list(c.responses.create(model=model, input="What is a model router?", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens
    with c.responses.stream(model=model, input="What is a model router?") as stream:
        final = stream.get_final_response()
    assert final.output_text == whole.output_text


@pytest.mark.parametrize("model", MODELS)
def test_responses_function_tool_round_trip(router, model):
    c = oai(router)
    first = c.responses.create(model=model, input="Weather in Oslo?", tools=[WEATHER_FN], tool_choice={"type": "function", "name": "get_weather"})
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    events = list(c.responses.create(model=model, input="Weather in Oslo?", tools=[WEATHER_FN], tool_choice="required", stream=True))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and json.loads(done[0].arguments) == json.loads(call.arguments)
    follow_up = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "4 degrees, rain"},
    ]
    second = c.responses.create(model=model, input=follow_up, tools=[WEATHER_FN])
    assert second.status == "completed" and second.output_text


def test_responses_bad_input_gets_the_apis_errors(router):
    c = oai(router)
    with pytest.raises(openai.BadRequestError) as stored:
        c.responses.create(model="standard", input="hi", previous_response_id="resp_123")
    assert stored.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as tool:
        c.responses.create(model="standard", input="hi", tools=[{"type": "web_search"}])
    assert tool.value.body["param"] == "tools"
    with pytest.raises(openai.NotFoundError) as missing:
        c.responses.create(model="gpt-nonexistent", input="hi")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as empty:
        c.responses.create(model="standard", input=[])
    assert empty.value.body["param"] == "input"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{router[0]}/v1", api_key="mr_sk_wrong", max_retries=0).responses.create(model="standard", input="hi")
