//! `model: "auto"` through the endpoint: the tier the score picks, the
//! headers that say so, and the explanation endpoint.

use serde_json::{json, Value};
use test_support::Harness;

use test_support::sse_data;

use crate::{header, read};

fn auto(text: &str) -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]})
}

const DEBUG: &str = "My script fails, how do I fix it?\nTraceback (most recent call last):\n  \
    File \"app.py\", line 18, in compute\n    return sum(r['amount'] for r in rows)\nKeyError: 'amount'";

const HARD: &str = "Prove by induction that the sum of the first n odd numbers is n squared, \
    then analyze the trade-offs of a direct combinatorial proof.";

#[tokio::test]
async fn auto_picks_the_tier_by_score_and_says_so() {
    let h = Harness::start().await;
    for (text, tier) in [("hi!", "economy"), (DEBUG, "standard"), (HARD, "premium")] {
        let response = h.chat(&auto(text)).await;
        assert_eq!(response.status(), 200, "{text}");
        assert_eq!(
            header(&response, "x-model-router-auto-tier"),
            tier,
            "{text}"
        );
        let score: u8 = header(&response, "x-model-router-auto-score")
            .parse()
            .unwrap();
        let (_, _, body) = read(response).await;
        let model = body["model"].as_str().unwrap().to_owned();
        let (_, _, entry) = read(h.get(&format!("/v1/models/{model}")).await).await;
        assert_eq!(entry["tier"], tier, "{text} (score {score}) ran on {model}");
    }
}

#[tokio::test]
async fn prefer_still_orders_within_the_chosen_tier_and_streams_carry_the_headers() {
    let h = Harness::start().await;
    let mut request = auto(HARD);
    request["prefer"] = json!("cheap");
    let cheap = h.chat(&request).await;
    request["prefer"] = json!("coding");
    let coding = h.chat(&request).await;
    assert_eq!(header(&cheap, "x-model-router-auto-tier"), "premium");
    assert_eq!(header(&cheap, "x-model-router-model"), "zai.glm-5");
    assert_eq!(header(&coding, "x-model-router-model"), "claude-opus-4-7");

    request["stream"] = json!(true);
    let streamed = h.chat(&request).await;
    assert_eq!(header(&streamed, "x-model-router-auto-tier"), "premium");
    assert!(!header(&streamed, "x-model-router-auto-score").is_empty());
    let text = streamed.text().await.unwrap();
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn pinned_and_tier_requests_carry_no_auto_headers() {
    let h = Harness::start().await;
    for model in ["gpt-4.1", "standard"] {
        let response = h
            .chat(&json!({"model": model, "messages": [{"role": "user", "content": HARD}]}))
            .await;
        assert_eq!(header(&response, "x-model-router-auto-tier"), "", "{model}");
    }
}

#[tokio::test]
async fn auto_is_listed_as_an_alias() {
    let h = Harness::start().await;
    let (status, _, entry) = read(h.get("/v1/models/auto").await).await;
    assert_eq!((status, entry["type"].as_str()), (200, Some("alias")));
    assert_eq!(
        entry["thresholds"],
        json!({"standard_from": 40, "premium_from": 70})
    );
    let (_, _, list) = read(h.get("/v1/models").await).await;
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "auto"));
}

#[tokio::test]
async fn explain_scores_without_calling_a_provider() {
    let h = Harness::start().await;
    let before = h.upstream_requests().await.len();
    let explain = |body: Value| {
        h.http
            .post(format!("{}/v1/router/explain", h.url))
            .bearer_auth(&h.key)
            .json(&body)
            .send()
    };
    let (status, _, body) = read(explain(auto(HARD)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "premium");
    assert_eq!(body["question"], "premium", "the premium question set it");
    let contributions = body["contributions"].as_array().unwrap();
    let total: f64 = contributions
        .iter()
        .map(|c| c["points"].as_f64().unwrap())
        .sum();
    let raw = body["base"].as_f64().unwrap() + total;
    assert_eq!(
        body["score"].as_f64().unwrap(),
        raw.round(),
        "the score is the base plus every contribution: {body}"
    );
    assert!(
        contributions.iter().any(|c| c["signal"] == "proof"),
        "{body}"
    );
    assert_eq!(
        h.upstream_requests().await.len(),
        before,
        "no provider was called"
    );

    let (status, _, body) = read(
        explain(json!({"model": "auto", "messages": []}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );
    let anonymous = h
        .http
        .post(format!("{}/v1/router/explain", h.url))
        .json(&auto("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
