//! A 2,048-input batch through `embed-titan` (one InvokeModel call per
//! input, fanned out) and `embed-small` (OpenAI, one call), against the real
//! gateway and simulator in this process, with the simulator holding every
//! call for a fixed latency.
//!
//! Reported per case: median wall time over the runs, and that time as a
//! ratio of the simulator's per-call latency and of the ideal schedule
//! (calls / concurrency rounds of one latency each). `direct` is the same
//! OpenAI request sent to the simulator itself, the baseline. Run with
//! `cargo bench -p gateway --bench embeddings`.

use std::time::{Duration, Instant};

use gateway::GatewayConfig;
use serde_json::json;
use test_support::{Harness, Options};

const INPUTS: usize = 2_048;
const RUNS: usize = 5;

/// One request, vectors in base64 as the official SDKs ask for them, to
/// `url` (the gateway's or the simulator's OpenAI endpoint).
async fn wall(h: &Harness, url: &str, model: &str, inputs: &[String]) -> Duration {
    let started = Instant::now();
    let response = h
        .http
        .post(url)
        .bearer_auth(if url.starts_with(&h.sim_url) {
            "sim-key"
        } else {
            &h.key
        })
        .json(&json!({"model": model, "input": inputs, "encoding_format": "base64"}))
        .send()
        .await
        .expect("reachable");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let body: openai::EmbeddingResponse = serde_json::from_slice(&bytes).expect("embeddings");
    assert_eq!(body.data.len(), inputs.len());
    started.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Where a case sends its requests.
enum Via {
    Gateway,
    Direct,
}

async fn case(h: &Harness, via: Via, model: &str, provider: &str, latency_ms: u64, calls: usize) {
    h.clear_faults().await;
    if latency_ms > 0 {
        h.fault(json!({"provider": provider, "latency_ms": latency_ms}))
            .await;
    }
    let inputs: Vec<String> = (0..INPUTS)
        .map(|i| format!("document {i}: a model router routes requests to providers"))
        .collect();
    let (url, label) = match via {
        Via::Gateway => (format!("{}/v1/embeddings", h.url), model.to_owned()),
        Via::Direct => (
            format!("{}/openai/v1/embeddings", h.sim_url),
            format!("direct {model}"),
        ),
    };
    // Warm the connection pools once.
    wall(h, &url, model, &inputs[..64]).await;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        times.push(wall(h, &url, model, &inputs).await);
    }
    let took = median(times);
    let concurrency = h.gateway.config.embeddings.concurrency;
    let rounds = calls.div_ceil(concurrency);
    let ideal_ms = (rounds as u64 * latency_ms) as f64;
    let ms = took.as_secs_f64() * 1000.0;
    let of_latency = if latency_ms > 0 {
        format!("{:.1}x", ms / latency_ms as f64)
    } else {
        "-".into()
    };
    let of_ideal = if latency_ms > 0 {
        format!("{:.2}x", ms / ideal_ms)
    } else {
        "-".into()
    };
    println!(
        "{label:<29} {calls:>5} calls  sim latency {latency_ms:>3} ms  wall {ms:>8.1} ms  \
         = {of_latency:>7} one call  = {of_ideal:>6} ideal ({rounds} rounds x {latency_ms} ms)"
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let h = Harness::start_with(Options {
            gateway: GatewayConfig::default(),
            ..Default::default()
        })
        .await;
        println!(
            "{INPUTS} inputs per request, median of {RUNS} runs, concurrency {}",
            h.gateway.config.embeddings.concurrency
        );
        for latency in [0, 20] {
            case(&h, Via::Gateway, "embed-titan", "bedrock", latency, INPUTS).await;
            case(&h, Via::Gateway, "embed-small", "openai", latency, 1).await;
            let small = "text-embedding-3-small";
            case(&h, Via::Direct, small, "openai", latency, 1).await;
        }
    });
}
