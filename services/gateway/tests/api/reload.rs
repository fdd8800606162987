use std::time::Duration;

use serde_json::json;
use test_support::{sse_data, Harness, Options};

use crate::{ask, header};

#[tokio::test]
async fn a_catalog_change_reroutes_without_a_restart_or_dropping_streams() {
    let dir = std::env::temp_dir().join(format!(
        "mr-reload-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("models.toml");
    std::fs::write(&file, catalog::BUILTIN_TOML).unwrap();
    let h = Harness::start_with(Options {
        catalog_file: Some(file.clone()),
        ..Default::default()
    })
    .await;

    let mut request = ask("premium", "Which model?");
    request["prefer"] = json!("cheap");
    assert_eq!(
        header(&h.chat(&request).await, "x-model-router-model"),
        "zai.glm-5"
    );

    // A slow stream is in flight while the catalog changes under it.
    h.fault(json!({"provider": "bedrock", "chunk_delay_ms": 20}))
        .await;
    let mut slow = request.clone();
    slow["stream"] = json!(true);
    let in_flight = h.chat(&slow).await;

    let cheaper = catalog::BUILTIN_TOML.replacen(
        "provider_model_id = \"gpt-5.4\"\ntier = \"premium\"\ncontext_window = 400000\nmax_output_tokens = 128000\ninput_per_mtok = \"2.50\"\noutput_per_mtok = \"15.00\"",
        "provider_model_id = \"gpt-5.4\"\ntier = \"premium\"\ncontext_window = 400000\nmax_output_tokens = 128000\ninput_per_mtok = \"0.10\"\noutput_per_mtok = \"1.00\"",
        1,
    );
    assert_ne!(cheaper, catalog::BUILTIN_TOML, "the edit applies");
    std::fs::write(&file, &cheaper).unwrap();
    let mut rerouted = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        if header(&h.chat(&request).await, "x-model-router-model") == "gpt-5.4" {
            rerouted = true;
            break;
        }
    }
    assert!(
        rerouted,
        "a cheaper gpt-5.4 takes premium/cheap traffic after the reload"
    );
    let events = sse_data(&in_flight.text().await.unwrap());
    assert_eq!(
        events.last().unwrap(),
        "[DONE]",
        "the stream begun before the reload finished"
    );

    // A broken file is refused and routing carries on with the last good catalog.
    std::fs::write(&file, "version = 1\n[[models]]\nid = 3\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = h.chat(&request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-model-router-model"), "gpt-5.4");
    std::fs::remove_dir_all(&dir).ok();
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
