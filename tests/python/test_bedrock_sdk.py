"""The official `boto3` bedrock-runtime client against the simulator's Bedrock.

boto3 signs every request with SigV4 itself and decodes the binary
event-stream frames (checking their CRCs) itself, so a wrong signature
check, frame, header or field fails these tests.
"""

import json
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

MODEL = "us.meta.llama4-scout-17b-instruct-v1:0"
WEATHER = {"toolSpec": {"name": "get_weather", "description": "Current weather for a city",
                        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}


def client(simulator, secret="sim-key", key_id="AKIASIMULATOR"):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=f"{simulator}/bedrock",
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def ask(text="What is a model router?"):
    return [{"role": "user", "content": [{"text": text}]}]


def fault(simulator, rule):
    method, data = ("DELETE", None) if rule is None else ("POST", json.dumps(rule).encode())
    request = urllib.request.Request(f"{simulator}/_sim/faults", data=data, method=method, headers={"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def test_converse_with_system_prompt(simulator):
    response = client(simulator).converse(modelId=MODEL, messages=ask(), system=[{"text": "Be terse."}], inferenceConfig={"maxTokens": 300, "temperature": 0.5})
    message = response["output"]["message"]
    assert message["role"] == "assistant" and "What is a model router?" in message["content"][0]["text"]
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["inputTokens"] > 0 and usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_stop_reasons(simulator):
    c = client(simulator)
    assert c.converse(modelId=MODEL, messages=ask(), inferenceConfig={"maxTokens": 3})["stopReason"] == "max_tokens"
    assert c.converse(modelId=MODEL, messages=ask(), inferenceConfig={"stopSequences": ["router"]})["stopReason"] == "stop_sequence"


def test_converse_stream_decodes_every_frame(simulator):
    c = client(simulator)
    whole = c.converse(modelId=MODEL, messages=ask())
    events = list(c.converse_stream(modelId=MODEL, messages=ask())["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == whole["usage"]


def test_tool_use_round_trip_and_streamed_input(simulator):
    c = client(simulator)
    tools = {"tools": [WEATHER], "toolChoice": {"tool": {"name": "get_weather"}}}
    first = c.converse(modelId=MODEL, messages=ask("Weather in Oslo?"), toolConfig=tools)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and isinstance(use["input"]["city"], str)
    history = ask("Weather in Oslo?") + [
        first["output"]["message"],
        {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "4 degrees"}], "status": "success"}}]},
    ]
    second = c.converse(modelId=MODEL, messages=history, toolConfig={"tools": [WEATHER]})
    assert second["stopReason"] == "end_turn"

    events = list(c.converse_stream(modelId=MODEL, messages=ask("Weather in Oslo?"), toolConfig=tools)["stream"])
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e)
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e]
    assert start["name"] == "get_weather" and len(pieces) > 1
    assert json.loads("".join(pieces)) == use["input"]


def test_signatures_are_checked(simulator):
    with pytest.raises(ClientError) as wrong_secret:
        client(simulator, secret="not-the-secret").converse(modelId=MODEL, messages=ask())
    assert wrong_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as stranger:
        client(simulator, key_id="AKIANOBODY").converse(modelId=MODEL, messages=ask())
    assert stranger.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_errors_carry_aws_error_codes(simulator):
    c = client(simulator)
    with pytest.raises(ClientError) as invalid:
        c.converse(modelId="amazon.no-such-model", messages=ask())
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    try:
        fault(simulator, {"provider": "bedrock", "status": 429})
        with pytest.raises(ClientError) as throttled:
            c.converse(modelId=MODEL, messages=ask())
        assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
        fault(simulator, {"provider": "bedrock", "status": 503})
        with pytest.raises(ClientError) as down:
            c.converse_stream(modelId=MODEL, messages=ask())
        assert down.value.response["Error"]["Code"] == "ServiceUnavailableException"
        fault(simulator, {"provider": "bedrock", "cut_after_chunks": 3})
        with pytest.raises(Exception):
            list(c.converse_stream(modelId=MODEL, messages=ask())["stream"])
        # A flipped bit fails the frame's CRC: boto3 refuses it, as the gateway does.
        fault(simulator, {"provider": "bedrock", "corrupt_frame": 2})
        with pytest.raises(Exception) as corrupt:
            list(c.converse_stream(modelId=MODEL, messages=ask())["stream"])
        assert "crc" in repr(corrupt.value).lower() or "checksum" in repr(corrupt.value).lower(), repr(corrupt.value)
    finally:
        fault(simulator, None)


def test_titan_embeddings_through_invoke_model(simulator):
    """Titan V2's InvokeModel body and answer, as boto3 signs and reads them."""
    c = client(simulator)
    body = json.dumps({"inputText": "a model router", "dimensions": 256, "normalize": True})
    response = c.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=body, contentType="application/json", accept="application/json")
    answer = json.loads(response["body"].read())
    assert len(answer["embedding"]) == 256
    assert answer["embeddingsByType"]["float"] == answer["embedding"]
    assert answer["inputTextTokenCount"] > 0
    assert abs(sum(x * x for x in answer["embedding"]) ** 0.5 - 1.0) < 1e-4
    with pytest.raises(ClientError) as bad:
        c.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "x", "dimensions": 300}))
    assert bad.value.response["Error"]["Code"] == "ValidationException"


def test_cache_points_are_bedrocks_wire_shape_and_refused_by_models_that_do_not_cache(simulator):
    # botocore validates the request against Bedrock's service model before
    # sending: cache points in system, messages and tools pass that check.
    cached = [{"text": "Be terse. " * 50}, {"cachePoint": {"type": "default"}}]
    messages = [{"role": "user", "content": [{"text": "Hi"}, {"cachePoint": {"type": "default"}}]}]
    tools = {"tools": [WEATHER, {"cachePoint": {"type": "default"}}]}
    with pytest.raises(ClientError) as refused:
        client(simulator).converse(modelId=MODEL, messages=messages, system=cached, toolConfig=tools)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "prompt caching" in refused.value.response["Error"]["Message"]
