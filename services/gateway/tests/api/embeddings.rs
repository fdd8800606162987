//! `/v1/embeddings`: aliases, pinning, batching across provider limits,
//! encodings, dimensions, fallback, errors, usage and cost.

use base64::Engine;
use serde_json::{json, Value};
use test_support::{prompt_of_tokens, Harness};

use crate::{header, read};

/// The vectors of a float response, in `data` order (after checking `index`).
fn vectors(body: &Value) -> Vec<Vec<f32>> {
    let data = body["data"].as_array().expect("data");
    data.iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e["index"], i, "data out of order");
            assert_eq!(e["object"], "embedding");
            e["embedding"]
                .as_array()
                .expect("float vector")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("document number {i}")).collect()
}

/// Embeds `body`, expecting success; returns the routing headers' model and the body.
async fn embed_ok(h: &Harness, body: Value) -> (String, reqwest::header::HeaderMap, Value) {
    let response = h.embed(&body).await;
    let model = header(&response, "x-model-router-model");
    let (status, headers, answer) = read(response).await;
    assert_eq!(status, 200, "{answer}");
    (model, headers, answer)
}

/// How many upstream requests `provider` received.
async fn calls_to(h: &Harness, provider: &str) -> usize {
    h.upstream_requests()
        .await
        .iter()
        .filter(|r| r["provider"] == provider)
        .count()
}

#[tokio::test]
async fn each_alias_routes_to_its_models_and_pinning_takes_one() {
    let h = Harness::start().await;
    for (alias, model, provider, dims) in [
        ("embed-small", "text-embedding-3-small", "openai", 1536),
        ("embed-large", "gemini-embedding-001", "google", 3072),
        ("embed-titan", "titan-embed-text-v2", "bedrock", 1024),
    ] {
        let (served, headers, body) = embed_ok(&h, json!({"model": alias, "input": "hello"})).await;
        assert_eq!(served, model, "{alias}");
        assert_eq!(body["model"], model);
        assert_eq!(body["object"], "list");
        assert_eq!(headers["x-model-router-provider"], provider);
        assert_eq!(headers["x-model-router-attempts"], "1");
        let v = &vectors(&body)[0];
        assert_eq!(v.len(), dims, "{alias}");
        assert!((norm(v) - 1.0).abs() < 1e-4, "{alias}: norm {}", norm(v));
    }
    // `prefer` reorders an alias: the cheaper large model.
    let (served, _, _) = embed_ok(
        &h,
        json!({"model": "embed-large", "input": "hello", "prefer": "cheap"}),
    )
    .await;
    assert_eq!(served, "text-embedding-3-large");
    // Pinned by id.
    let (served, _, body) = embed_ok(
        &h,
        json!({"model": "text-embedding-3-large", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(served, "text-embedding-3-large");
    assert_eq!(vectors(&body).len(), 2);
    // Same text, same vector; another text, another vector.
    let (_, _, again) =
        embed_ok(&h, json!({"model": "text-embedding-3-large", "input": "a"})).await;
    assert_eq!(vectors(&again)[0], vectors(&body)[0]);
    assert_ne!(vectors(&body)[0], vectors(&body)[1]);
}

#[tokio::test]
async fn batches_split_at_provider_limits_come_back_in_input_order() {
    let h = Harness::start().await;
    let inputs = texts(250);
    // Gemini takes 100 per call: 3 calls.
    let (served, _, body) = embed_ok(&h, json!({"model": "embed-large", "input": inputs})).await;
    assert_eq!(served, "gemini-embedding-001");
    assert_eq!(calls_to(&h, "google").await, 3);
    let batched = vectors(&body);
    assert_eq!(batched.len(), 250);
    for i in [0, 99, 100, 101, 199, 200, 249] {
        let (_, _, one) = embed_ok(&h, json!({"model": "embed-large", "input": inputs[i]})).await;
        assert_eq!(vectors(&one)[0], batched[i], "input {i} out of place");
    }

    // Titan takes one per call: one call per input, still in order.
    let inputs = texts(40);
    let (_, _, body) = embed_ok(&h, json!({"model": "embed-titan", "input": inputs})).await;
    assert_eq!(calls_to(&h, "bedrock").await, 40);
    let fanned = vectors(&body);
    for i in [0, 17, 39] {
        let (_, _, one) = embed_ok(&h, json!({"model": "embed-titan", "input": inputs[i]})).await;
        assert_eq!(vectors(&one)[0], fanned[i], "input {i} out of place");
    }
}

#[tokio::test]
async fn openai_batches_split_by_tokens_and_usage_adds_up() {
    let h = Harness::start().await;
    // 40 inputs of ~8,000 tokens: over OpenAI's 300k tokens per call.
    let inputs: Vec<String> = (0..40)
        .map(|i| format!("{i} {}", prompt_of_tokens(8_000)))
        .collect();
    let (served, headers, body) = embed_ok(
        &h,
        json!({"model": "text-embedding-3-small", "input": inputs}),
    )
    .await;
    assert_eq!(served, "text-embedding-3-small");
    assert_eq!(calls_to(&h, "openai").await, 2);
    assert_eq!(vectors(&body).len(), 40);
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(body["usage"]["total_tokens"].as_u64().unwrap(), tokens);
    assert!(tokens > 300_000, "{tokens}");
    // $0.02 per million input tokens = 20 nano-dollars a token.
    let cost = money::Money::from_nanos(tokens as i64 * 20).to_string();
    assert_eq!(headers["x-model-router-cost"], cost.as_str());
    assert_eq!(
        body["usage"]["cost"],
        cost.as_str(),
        "the body carries it too"
    );
}

#[tokio::test]
async fn base64_decodes_to_exactly_the_float_vectors() {
    let h = Harness::start().await;
    for model in ["embed-small", "embed-large", "embed-titan"] {
        let request = json!({"model": model, "input": ["alpha", "beta"]});
        let (_, _, floats) = embed_ok(&h, request.clone()).await;
        let mut b64_request = request;
        b64_request["encoding_format"] = json!("base64");
        let (_, _, encoded) = embed_ok(&h, b64_request).await;
        for (i, expected) in vectors(&floats).iter().enumerate() {
            let text = encoded["data"][i]["embedding"]
                .as_str()
                .expect("base64 string");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap();
            let decoded: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(&decoded, expected, "{model} input {i}");
        }
    }
}

#[tokio::test]
async fn native_dimensions_are_asked_for_and_others_are_cut_and_renormalised() {
    let h = Harness::start().await;
    // OpenAI v3: any size natively.
    let (_, _, body) = embed_ok(
        &h,
        json!({"model": "embed-small", "input": "x", "dimensions": 256}),
    )
    .await;
    assert_eq!(vectors(&body)[0].len(), 256);
    assert_eq!(crate::sent_to(&h, "openai").await["dimensions"], 256);

    // Gemini 768 natively; the simulator, like Gemini, does not normalise below 3072.
    let (_, _, body) = embed_ok(
        &h,
        json!({"model": "gemini-embedding-001", "input": "x", "dimensions": 768}),
    )
    .await;
    assert_eq!(
        crate::sent_to(&h, "google").await["requests"][0]["outputDimensionality"],
        768
    );
    let v = &vectors(&body)[0];
    assert_eq!(v.len(), 768);
    assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));

    // Titan: 300 is not a native size, so 512 is asked for and cut to 300.
    let (_, _, native) = embed_ok(
        &h,
        json!({"model": "embed-titan", "input": "x", "dimensions": 512}),
    )
    .await;
    let (_, _, cut) = embed_ok(
        &h,
        json!({"model": "embed-titan", "input": "x", "dimensions": 300}),
    )
    .await;
    assert_eq!(crate::sent_to(&h, "bedrock").await["dimensions"], 512);
    let full = &vectors(&native)[0];
    let cut = &vectors(&cut)[0];
    assert_eq!(cut.len(), 300);
    assert!((norm(cut) - 1.0).abs() < 1e-4);
    let head = norm(&full[..300]);
    for (c, f) in cut.iter().zip(&full[..300]) {
        assert!((f64::from(*c) - f64::from(*f) / head).abs() < 1e-6);
    }

    // Below Gemini's smallest native size: the default vector is cut.
    let (_, _, body) = embed_ok(
        &h,
        json!({"model": "gemini-embedding-001", "input": "x", "dimensions": 64}),
    )
    .await;
    assert!(crate::sent_to(&h, "google").await["requests"][0]
        .get("outputDimensionality")
        .is_none());
    assert_eq!(vectors(&body)[0].len(), 64);
    assert!((norm(&vectors(&body)[0]) - 1.0).abs() < 1e-4);

    // embed-small at 1,500: Titan (1,024) cannot, OpenAI can.
    let (served, _, _) = embed_ok(
        &h,
        json!({"model": "embed-small", "input": "x", "dimensions": 1500, "prefer": "fast"}),
    )
    .await;
    assert_eq!(served, "text-embedding-3-small");
}

#[tokio::test]
async fn token_arrays_go_to_openai_models_only() {
    let h = Harness::start().await;
    let (served, _, body) = embed_ok(
        &h,
        json!({"model": "embed-small", "input": [[1, 2, 3], [4, 5]], "prefer": "fast"}),
    )
    .await;
    assert_eq!(served, "text-embedding-3-small");
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(
        crate::sent_to(&h, "openai").await["input"],
        json!([[1, 2, 3], [4, 5]])
    );
    let (status, _, body) = read(
        h.embed(&json!({"model": "embed-titan", "input": [1, 2]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "input");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("token-id input"));
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let h = Harness::start().await;
    let cases = [
        (
            json!({"model": "embed-small", "input": []}),
            400,
            "input",
            "at least one",
        ),
        (
            json!({"model": "embed-small", "input": ["a", ""]}),
            400,
            "input",
            "item 1 is empty",
        ),
        (
            json!({"model": "embed-small", "input": {"a": 1}}),
            400,
            "input",
            "must be a string",
        ),
        (
            json!({"model": "embed-small", "input": ["a", 2]}),
            400,
            "input",
            "item 1 is not a string",
        ),
        (
            json!({"model": "embed-small", "input": "a", "dimensions": 0}),
            400,
            "dimensions",
            "at least 1",
        ),
        (
            json!({"model": "embed-small", "input": "a", "dimensions": 1537}),
            400,
            "dimensions",
            "from 1 to",
        ),
        (
            json!({"model": "embed-titan", "input": "a", "dimensions": 2000}),
            400,
            "dimensions",
            "from 1 to 1024",
        ),
        (
            json!({"model": "embed-small", "input": "a", "encoding_format": "int8"}),
            400,
            "encoding_format",
            "unknown variant",
        ),
        (
            json!({"model": "embed-small", "input": "a", "prefer": "soon"}),
            400,
            "prefer",
            "cheap, fast",
        ),
        (
            json!({"model": "embed-medium", "input": "a"}),
            404,
            "model",
            "embed-small, embed-large, embed-titan",
        ),
        (
            json!({"model": "gpt-4.1", "input": "a"}),
            400,
            "model",
            "is a chat model",
        ),
        (json!({"input": "a"}), 400, "", "model"),
        (
            json!({"model": "embed-titan", "input": prompt_of_tokens(9_000)}),
            400,
            "input",
            "at most 8192",
        ),
    ];
    for (request, status, param, says) in cases {
        let (got, _, body) = read(h.embed(&request).await).await;
        assert_eq!(got, status, "{request}: {body}");
        let error = &body["error"];
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{request}: {body}");
        }
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{request}: {message}");
    }
    let too_many: Vec<String> = texts(2049);
    let (status, _, body) = read(
        h.embed(&json!({"model": "embed-small", "input": too_many}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2048"));
    let long = read(
        h.embed(&json!({"model": "embed-titan", "input": prompt_of_tokens(9_000)}))
            .await,
    )
    .await;
    assert_eq!(long.2["error"]["code"], "context_length_exceeded");
    let unauthorized = h
        .http
        .post(format!("{}/v1/embeddings", h.url))
        .json(&json!({"model": "embed-small", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test]
async fn a_failing_provider_falls_back_for_the_whole_request() {
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "status": 503})).await;
    let (served, headers, body) =
        embed_ok(&h, json!({"model": "embed-small", "input": texts(3)})).await;
    assert_eq!(served, "titan-embed-text-v2");
    assert_eq!(headers["x-model-router-attempts"], "2");
    assert_eq!(vectors(&body).len(), 3);
    assert!(vectors(&body).iter().all(|v| v.len() == 1024));

    // A pinned model has nowhere to go: a clear error and no vectors.
    let (status, _, body) = read(
        h.embed(&json!({"model": "text-embedding-3-small", "input": "a"}))
            .await,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "all_candidates_failed");
    assert!(body.get("data").is_none());
}

#[tokio::test]
async fn one_failing_sub_batch_is_retried_or_moves_the_whole_request() {
    let h = Harness::start().await;
    let inputs = texts(250);
    let (_, _, reference) = embed_ok(&h, json!({"model": "embed-large", "input": inputs})).await;
    let reference = vectors(&reference);

    // One Gemini call fails once: retried, every vector from Gemini, in order.
    h.fault(json!({"provider": "google", "status": 500, "times": 1}))
        .await;
    let (served, headers, body) =
        embed_ok(&h, json!({"model": "embed-large", "input": inputs})).await;
    assert_eq!(served, "gemini-embedding-001");
    assert_eq!(headers["x-model-router-attempts"], "1");
    assert_eq!(vectors(&body), reference);

    // Gemini keeps failing: all 250 vectors come from the next model, none from Gemini.
    h.fault(json!({"provider": "google", "status": 500})).await;
    let (served, headers, body) =
        embed_ok(&h, json!({"model": "embed-large", "input": inputs})).await;
    assert_eq!(served, "text-embedding-3-large");
    assert_eq!(headers["x-model-router-attempts"], "2");
    let fallback = vectors(&body);
    assert_eq!(fallback.len(), 250);
    assert!(fallback.iter().all(|v| v.len() == 3072));
    assert_ne!(fallback[0], reference[0]);
    h.clear_faults().await;

    // Titan fan-out rate limited for a second: the calls wait it out, all 40 vectors come.
    h.fault(json!({"provider": "bedrock", "status": 429, "retry_after_s": 1, "times": 1}))
        .await;
    let (served, headers, body) =
        embed_ok(&h, json!({"model": "embed-titan", "input": texts(40)})).await;
    assert_eq!(served, "titan-embed-text-v2");
    assert_eq!(headers["x-model-router-attempts"], "1");
    assert_eq!(vectors(&body).len(), 40);

    // Titan fan-out with one call failing for good: an error, not 39 vectors.
    h.fault(json!({"provider": "bedrock", "status": 500})).await;
    let (status, _, body) = read(
        h.embed(&json!({"model": "embed-titan", "input": texts(40)}))
            .await,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.get("data").is_none());
}

#[tokio::test]
async fn gemini_is_billed_on_the_gateways_count_and_titan_on_its_own() {
    let h = Harness::start().await;
    let (_, headers, body) = embed_ok(
        &h,
        json!({"model": "gemini-embedding-001", "input": ["hello world", "routers route"]}),
    )
    .await;
    let counter = tokens::TokenCounter::default();
    let expected = counter.count_text("hello world") + counter.count_text("routers route");
    assert_eq!(body["usage"]["prompt_tokens"], expected);
    // $0.15 per million = 150 nano-dollars a token.
    let cost = money::Money::from_nanos(expected as i64 * 150).to_string();
    assert_eq!(headers["x-model-router-cost"], cost.as_str());

    let (_, headers, body) =
        embed_ok(&h, json!({"model": "embed-titan", "input": ["a b c", "d"]})).await;
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        tokens,
        counter.count_text("a b c") + counter.count_text("d")
    );
    assert_eq!(
        headers["x-model-router-cost"],
        money::Money::from_nanos(tokens as i64 * 20)
            .to_string()
            .as_str()
    );
}

#[tokio::test]
async fn models_list_shows_embedding_aliases_and_models() {
    let h = Harness::start().await;
    let (_, _, list) = read(h.get("/v1/models").await).await;
    let find = |id: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed"))
    };
    let small = find("embed-small");
    assert_eq!(small["type"], "embedding_alias");
    assert_eq!(
        small["models"],
        json!(["text-embedding-3-small", "titan-embed-text-v2"])
    );
    let titan = find("titan-embed-text-v2");
    assert_eq!(titan["type"], "embedding_model");
    assert_eq!(titan["dimensions"], 1024);
    assert_eq!(
        titan["native_dimensions"],
        json!({"one_of": [256, 512, 1024]})
    );
    let (status, _, one) = read(h.get("/v1/models/embed-titan").await).await;
    assert_eq!(status, 200);
    assert_eq!(one["models"], json!(["titan-embed-text-v2"]));
}
