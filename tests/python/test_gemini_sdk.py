"""The official `google-genai` SDK against the simulator's Gemini dialect.

The SDK validates every response into its pydantic models and joins SSE
chunks itself, so a wrong field name, case or frame fails these tests.
"""

import json

import pytest
from google import genai
from google.genai import errors, types

MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def client(simulator, key="sim-key", headers=None):
    options = types.HttpOptions(base_url=f"{simulator}/google", headers=headers or {}, retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=key, http_options=options)


def test_generate_content_with_system_instruction(simulator):
    config = types.GenerateContentConfig(system_instruction="You are terse.", max_output_tokens=300, temperature=0.2)
    c = client(simulator)
    response = c.models.generate_content(model=MODEL, contents="What is a model router?", config=config)
    assert "What is a model router?" in response.text
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == MODEL


def test_max_tokens_finish_reason(simulator):
    config = types.GenerateContentConfig(max_output_tokens=3)
    c = client(simulator)
    response = c.models.generate_content(model=MODEL, contents="Tell me more", config=config)
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata.candidates_token_count == 3


def test_stream_joins_into_the_whole_answer(simulator):
    c = client(simulator)
    whole = c.models.generate_content(model=MODEL, contents="What is a model router?")
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="What is a model router?"))
    assert len(chunks) > 2
    assert "".join(chunk.text or "" for chunk in chunks) == whole.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count


def test_function_call_round_trip(simulator):
    c = client(simulator)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    first = c.models.generate_content(model=MODEL, contents="Weather in Oslo?", config=config)
    call = first.function_calls[0]
    assert call.name == "get_weather" and isinstance(call.args["city"], str)
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather in Oslo?")]),
        first.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"result": "4 degrees"})]),
    ]
    second = c.models.generate_content(model=MODEL, contents=history, config=config)
    assert second.function_calls is None and second.text


def test_streamed_function_calls_parse(simulator):
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    c = client(simulator)
    calls = [call for chunk in c.models.generate_content_stream(model=MODEL, contents="Weather?", config=config) for call in chunk.function_calls or []]
    assert [call.name for call in calls] == ["get_weather"]


def test_json_mode_with_a_schema(simulator):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "rain": {"type": "boolean"}}}
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    c = client(simulator)
    response = c.models.generate_content(model=MODEL, contents="Oslo weather", config=config)
    assert json.loads(response.text) == {"city": "sample", "rain": True}


def test_errors_raise_the_sdks_own_classes(simulator):
    # Each client is kept in a variable: the SDK closes its HTTP client when the object goes away.
    wrong_key = client(simulator, key="wrong")
    with pytest.raises(errors.ClientError) as bad_key:
        wrong_key.models.generate_content(model=MODEL, contents="hi")
    assert bad_key.value.code == 400 and bad_key.value.status == "INVALID_ARGUMENT"
    c = client(simulator)
    with pytest.raises(errors.ClientError) as missing:
        c.models.generate_content(model="gemini-nonexistent", contents="hi")
    assert missing.value.code == 404
    rate_limited = client(simulator, headers={"x-sim-fault": json.dumps({"status": 429})})
    with pytest.raises(errors.ClientError) as limited:
        rate_limited.models.generate_content(model=MODEL, contents="hi")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    unavailable = client(simulator, headers={"x-sim-fault": json.dumps({"status": 503})})
    with pytest.raises(errors.ServerError) as down:
        unavailable.models.generate_content(model=MODEL, contents="hi")
    assert down.value.code == 503 and down.value.status == "UNAVAILABLE"


def test_embed_content_batch_with_output_dimensionality(simulator):
    """The SDK sends several contents as one `batchEmbedContents` call."""
    c = client(simulator)
    config = types.EmbedContentConfig(output_dimensionality=768)
    response = c.models.embed_content(model="gemini-embedding-001", contents=["first text", "second text"], config=config)
    assert len(response.embeddings) == 2
    assert all(len(e.values) == 768 for e in response.embeddings)
    assert response.embeddings[0].values != response.embeddings[1].values
    again = c.models.embed_content(model="gemini-embedding-001", contents="second text", config=config)
    assert again.embeddings[0].values == response.embeddings[1].values
    with pytest.raises(errors.ClientError):
        c.models.embed_content(model="gemini-embedding-001", contents="x", config=types.EmbedContentConfig(output_dimensionality=4096))
