use serde_json::json;
use test_support::{prompt_of_tokens, Harness};

use crate::{ask, header, read};

#[tokio::test]
async fn a_150k_token_prompt_skips_models_with_smaller_windows() {
    let h = Harness::start().await;
    let mut small = ask("economy", "short");
    small["prefer"] = json!("cheap");
    assert_eq!(
        header(&h.chat(&small).await, "x-model-router-model"),
        "qwen-3-235b-a22b-instruct-2507"
    );

    let mut big = ask("economy", &prompt_of_tokens(150_000));
    big["prefer"] = json!("cheap");
    let response = h.chat(&big).await;
    assert_eq!(response.status(), 200);
    // The free models and the cheap Bedrock ones hold 131,072 tokens at most;
    // of the rest gpt-4.1-mini (1M) is cheapest.
    assert_eq!(header(&response, "x-model-router-model"), "gpt-4.1-mini");
    let (_, _, body) = read(response).await;
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        (150_000..150_020).contains(&prompt_tokens),
        "{prompt_tokens}"
    );
}

#[tokio::test]
async fn a_pinned_model_too_small_is_400_naming_the_sizes() {
    let h = Harness::start().await;
    let (status, _, body) = read(
        h.chat(&ask("grok-3-beta", &prompt_of_tokens(150_000)))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    // 150,000 text tokens + 3 for the message + 3 priming the reply.
    assert!(
        message.contains("131072") && message.contains("150006 o200k tokens"),
        "{message}"
    );
}

#[tokio::test]
async fn three_million_tokens_fit_nowhere() {
    let h = Harness::start().await;
    let (status, _, body) = read(h.chat(&ask("economy", &prompt_of_tokens(3_000_000))).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    // The largest window among the configured economy models: gemini-2.5-flash's.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 tokens"),
        "{body}"
    );
}

#[tokio::test]
async fn requested_output_counts_against_the_window() {
    let h = Harness::start().await;
    // 100k o200k tokens are estimated at 115k for xAI (margin 1.15); grok-3 holds 131,072.
    let mut request = ask("grok-3-beta", &prompt_of_tokens(100_000));
    request["max_tokens"] = json!(5_000);
    assert_eq!(h.chat(&request).await.status(), 200);
    request["max_tokens"] = json!(20_000);
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("context_length_exceeded"))
    );

    let mut request = ask("gpt-4.1", "short");
    request["max_tokens"] = json!(100_000);
    let (status, _, body) = read(h.chat(&request).await).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("max_tokens")),
        "{body}"
    );
}

#[tokio::test]
async fn the_guard_does_not_tokenize_when_byte_bounds_decide() {
    let h = Harness::start().await;
    let before = h.gateway.tokens.tokenized_bytes();
    assert_eq!(
        h.chat(&ask("standard", &"word ".repeat(20_000)))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.gateway.tokens.tokenized_bytes(),
        before,
        "100 kB fits every window by bytes alone"
    );
    assert_eq!(
        h.chat(&ask("grok-3-beta", &prompt_of_tokens(30_000)))
            .await
            .status(),
        200
    );
    assert!(
        h.gateway.tokens.tokenized_bytes() > before,
        "180 kB against a 131k window needs a count"
    );
}
