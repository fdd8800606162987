//! What translating a provider's stream costs per chunk, against the SSE
//! decoding every stream needs anyway (the baseline):
//! - OpenAI dialects: decode, then parse each chunk;
//! - Anthropic: decode, parse each event, translate it to an OpenAI chunk;
//! - Gemini: decode, parse each streamed response, translate it;
//! - Bedrock: decode event-stream frames (CRC-checked), parse, translate.
//!
//! Each stream is a 200-token reply in word-sized pieces, as providers send.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::{stream, FutureExt, StreamExt};
use gateway::providers::anthropic::response::{Asked, StreamTranslator};
use gateway::providers::bedrock::response::StreamTranslator as BedrockTranslator;
use gateway::providers::google::response::StreamTranslator as GeminiTranslator;
use openai::ChatCompletionChunk;
use serde_json::json;

const PIECES: usize = 200;

fn openai_stream() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..PIECES {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1",
            "system_fingerprint": "fp", "choices": [{"index": 0, "delta": {"content": format!(" word{i}")}, "logprobs": null, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn anthropic_stream() -> Vec<u8> {
    let mut out = String::new();
    let mut event = |name: &str, data: serde_json::Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-6", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for i in 0..PIECES {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!(" word{i}")}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 200}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out.into_bytes()
}

fn gemini_stream() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..PIECES {
        let mut piece = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!(" word{i}")}]}, "index": 0}],
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"});
        if i + 1 == PIECES {
            piece["candidates"][0]["finishReason"] = json!("STOP");
            piece["usageMetadata"] = json!({"promptTokenCount": 20, "candidatesTokenCount": 200, "totalTokenCount": 220});
        }
        out.push_str(&format!("data: {piece}\r\n\r\n"));
    }
    out.into_bytes()
}

fn bedrock_stream() -> Vec<u8> {
    use bedrock::eventstream::event;
    let mut out = event("messageStart", br#"{"role":"assistant"}"#).to_vec();
    for i in 0..PIECES {
        let delta = json!({"delta": {"text": format!(" word{i}")}, "contentBlockIndex": 0});
        out.extend_from_slice(&event("contentBlockDelta", delta.to_string().as_bytes()));
    }
    out.extend_from_slice(&event("contentBlockStop", br#"{"contentBlockIndex":0}"#));
    out.extend_from_slice(&event("messageStop", br#"{"stopReason":"end_turn"}"#));
    let metadata = json!({"usage": {"inputTokens": 20, "outputTokens": 200, "totalTokens": 220}, "metrics": {"latencyMs": 100}});
    out.extend_from_slice(&event("metadata", metadata.to_string().as_bytes()));
    out
}

/// Feeds `bytes` in 1 KiB reads, as a socket would, through the gateway's
/// SSE reader, and hands each event's data to `each`.
fn decode(bytes: &[u8], mut each: impl FnMut(String)) {
    let reads = stream::iter(bytes.chunks(1024).map(Ok));
    let mut events = Box::pin(gateway::sse::events(reads));
    while let Some(Some(event)) = events.next().now_or_never() {
        each(event.expect("an event").data);
    }
}

fn bench(c: &mut Criterion) {
    let openai = openai_stream();
    let anthropic = anthropic_stream();
    let gemini = gemini_stream();
    let bedrock = bedrock_stream();
    let mut group = c.benchmark_group("stream translation, 200 chunks");
    group.throughput(Throughput::Elements(PIECES as u64));
    group.bench_function("SSE decode only (baseline)", |b| {
        b.iter(|| decode(&anthropic, |data| drop(std::hint::black_box(data))))
    });
    group.bench_function("OpenAI dialect: decode + parse", |b| {
        b.iter(|| {
            decode(&openai, |data| {
                if data != "[DONE]" {
                    let chunk: ChatCompletionChunk = serde_json::from_str(&data).expect("chunk");
                    std::hint::black_box(chunk);
                }
            })
        })
    });
    group.bench_function("Anthropic: decode + parse + translate", |b| {
        b.iter(|| {
            let mut translator = StreamTranslator::new(Asked::default());
            decode(&anthropic, |data| {
                let event = serde_json::from_str(&data).expect("event");
                std::hint::black_box(translator.on(event).expect("translates"));
            })
        })
    });
    group.bench_function("Gemini: decode + parse + translate", |b| {
        b.iter(|| {
            let mut translator = GeminiTranslator::new("gemini-2.5-flash");
            decode(&gemini, |data| {
                let piece = serde_json::from_str(&data).expect("piece");
                std::hint::black_box(translator.on(piece));
            })
        })
    });
    group.bench_function("Bedrock: decode frames + parse + translate", |b| {
        b.iter(|| {
            let mut translator =
                BedrockTranslator::new("us.meta.llama4-scout-17b-instruct-v1:0", "id".into());
            let mut decoder = bedrock::eventstream::Decoder::default();
            for read in bedrock.chunks(1024) {
                decoder.push(read);
                while let Some(frame) = decoder.next_frame().expect("frame") {
                    std::hint::black_box(translator.on(frame).expect("translates"));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
