//! Every request gets the gateway's own `X-Request-Id`, and every log line
//! written while serving it (the detached provider work included) carries it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use test_support::Harness;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::{ask, header};

/// Log output of this test binary, captured once for all tests in it.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let targets: Targets = "gateway=warn".parse().expect("a filter");
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish()
            .with(targets);
        // Another test may have set one first; then this test fails loudly below.
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_attempt_is_logged_under_the_request_id_the_client_got() {
    let logs = captured();
    let h = Harness::start().await;
    h.fault(json!({"provider": "openai", "status": 503})).await;
    let mut request = ask("economy", "Route me");
    request["prefer"] = json!("quality");
    let response = h
        .http
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&h.key)
        .header("x-request-id", "req_chosen_by_the_client")
        .json(&request)
        .send()
        .await
        .expect("gateway reachable");
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-request-id");
    assert!(
        id.starts_with("req_") && id != "req_chosen_by_the_client",
        "{id}"
    );

    let text =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("attempt failed") && l.contains("openai"))
        .unwrap_or_else(|| panic!("no failed attempt logged:\n{text}"));
    assert!(
        line.contains(&format!("id={id}")),
        "the line does not carry {id}: {line}"
    );
}
