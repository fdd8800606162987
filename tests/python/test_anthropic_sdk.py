"""The official `anthropic` SDK against the simulator's Anthropic dialect.

The SDK parses every response into its typed models and accumulates stream
events into a final message itself, so a missing field, a wrong event order
or a bad SSE frame fails these tests.
"""

import json

import anthropic
import pytest
from anthropic import Anthropic

MODEL = "claude-haiku-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "boolean"}}, "required": ["city"]},
}


def client(simulator, key="sim-key"):
    return Anthropic(base_url=f"{simulator}/anthropic", api_key=key, max_retries=0)


def ask(text="What is a model router?"):
    return [{"role": "user", "content": text}]


def test_create_returns_a_typed_message_with_usage(simulator):
    message = client(simulator).messages.create(model=MODEL, max_tokens=300, system="You are terse.", messages=ask())
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_") and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and "What is a model router?" in message.content[0].text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0


def test_stop_reasons(simulator):
    c = client(simulator)
    short = c.messages.create(model=MODEL, max_tokens=3, messages=ask())
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    stopped = c.messages.create(model=MODEL, max_tokens=300, messages=ask(), stop_sequences=["router"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "router"
    assert "router" not in stopped.content[0].text.split('"', 2)[-1]


def test_stream_accumulates_into_the_same_message(simulator):
    c = client(simulator)
    whole = c.messages.create(model=MODEL, max_tokens=300, messages=ask())
    with c.messages.stream(model=MODEL, max_tokens=300, messages=ask()) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_tool_use_round_trip(simulator):
    c = client(simulator)
    first = c.messages.create(model=MODEL, max_tokens=300, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.id.startswith("toolu_") and isinstance(call.input, dict)
    assert set(call.input) == {"city", "celsius"}
    follow_up = [
        *ask("Weather in Oslo?"),
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 degrees, rain"}]},
    ]
    second = c.messages.create(model=MODEL, max_tokens=300, messages=follow_up, tools=[WEATHER])
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


def test_streamed_tool_input_is_parsed_from_json_deltas(simulator):
    c = client(simulator)
    kwargs = dict(model=MODEL, max_tokens=300, messages=ask("Weather in Oslo?"), tools=[WEATHER], tool_choice={"type": "any"})
    whole = c.messages.create(**kwargs)
    with c.messages.stream(**kwargs) as stream:
        deltas = [e.delta.partial_json for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert len(deltas) > 1
    assert json.loads("".join(deltas)) == whole.content[0].input == final.content[0].input


def test_thinking_blocks_stream_with_signature(simulator):
    with client(simulator).messages.stream(model=MODEL, max_tokens=2000, messages=ask(), thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking and final.content[0].signature == "sim-signature"


def test_errors_raise_the_sdks_own_classes(simulator):
    with pytest.raises(anthropic.AuthenticationError):
        client(simulator, key="wrong").messages.create(model=MODEL, max_tokens=10, messages=ask())
    with pytest.raises(anthropic.NotFoundError):
        client(simulator).messages.create(model="claude-nonexistent", max_tokens=10, messages=ask())
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(simulator).messages.create(model=MODEL, max_tokens=10, messages=ask(), extra_body={"temperature": 1.5})
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    overloaded = json.dumps({"status": 529})
    with pytest.raises(anthropic.OverloadedError):
        client(simulator).messages.create(model=MODEL, max_tokens=10, messages=ask(), extra_headers={"x-sim-fault": overloaded})
    limited = json.dumps({"status": 429, "retry_after_s": 3})
    with pytest.raises(anthropic.RateLimitError) as rate:
        client(simulator).messages.create(model=MODEL, max_tokens=10, messages=ask(), extra_headers={"x-sim-fault": limited})
    assert rate.value.response.headers["retry-after"] == "3"


def test_a_stream_cut_short_is_an_error_not_a_message(simulator):
    cut = json.dumps({"cut_after_chunks": 4})
    with pytest.raises(Exception) as error:
        with client(simulator).messages.stream(model=MODEL, max_tokens=300, messages=ask(), extra_headers={"x-sim-fault": cut}) as stream:
            stream.get_final_message()
    assert "incomplete" in str(error.value), repr(error.value)
