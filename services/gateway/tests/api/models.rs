use test_support::Harness;

use crate::read;

#[tokio::test]
async fn models_lists_tiers_and_every_catalog_model() {
    let h = Harness::start().await;
    let (status, _, body) = read(h.get("/v1/models").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    for tier in ["economy", "standard", "premium"] {
        assert!(ids.contains(&tier), "{tier}");
    }
    let catalog = catalog::Catalog::builtin();
    for model in catalog.models() {
        let entry = data
            .iter()
            .find(|m| m["id"] == model.id.as_str())
            .unwrap_or_else(|| panic!("{} missing", model.id));
        assert_eq!(entry["object"], "model");
        assert_eq!(entry["owned_by"], model.provider.as_str());
        assert_eq!(entry["context_window"], model.context_window);
        assert_eq!(entry["free"], model.free);
    }
    let available = |id: &str| {
        data.iter().find(|m| m["id"] == id).unwrap()["available"]
            .as_bool()
            .unwrap()
    };
    for model in catalog.models() {
        assert!(
            available(&model.id),
            "every provider has an adapter: {}",
            model.id
        );
    }
}

#[tokio::test]
async fn a_model_or_tier_can_be_retrieved_and_unknown_ids_are_404() {
    let h = Harness::start().await;
    let (status, _, body) = read(h.get("/v1/models/standard").await).await;
    assert_eq!((status, body["type"].as_str()), (200, Some("tier")));
    assert!(body["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "gpt-4.1"));
    let (status, _, body) = read(h.get("/v1/models/gpt-4.1").await).await;
    assert_eq!(
        (status, body["context_window"].as_u64()),
        (200, Some(1_047_576))
    );
    assert_eq!(body["pricing"]["input_per_mtok"], "2");
    assert!(
        body.get("scores_note").is_none(),
        "gpt-4.1's scores are published figures"
    );
    let (_, _, body) = read(h.get("/v1/models/grok-3-beta").await).await;
    assert_eq!(body["scores_note"], "estimate");
    let (status, _, body) = read(h.get("/v1/models/nope").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let response = h
        .http
        .get(format!("{}/v1/models", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
