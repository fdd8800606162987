//! The `model: "auto"` model through the binary, as an operator uses it:
//! `train-auto` writes a file, `evaluate` reads it, `up` serves it, reloads
//! it on SIGHUP and keeps the previous one when the new file is bad, and
//! refuses to start on a bad one.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use test_support::deployment::{temp_dir, Up};

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");
const SHIPPED: &str = include_str!("../../../shared/catalog/auto_model.json");
const PROOF: &str = "Prove that there are infinitely many primes of the form 4k+3.";

fn corpus() -> String {
    let mut lines = Vec::new();
    for (family, label, text) in [
        ("greetings", "economy", "hello there, how are you"),
        ("facts", "economy", "what is the capital of France"),
        (
            "scripts",
            "standard",
            "write a script that renames files, with tests",
        ),
        ("apis", "standard", "implement a REST endpoint with tests"),
        (
            "proofs",
            "premium",
            "prove the lemma rigorously by induction",
        ),
        (
            "design",
            "premium",
            "design a multi-region ledger with exactly-once writes",
        ),
    ] {
        for i in 0..4 {
            lines.push(
                json!({"id": format!("{family}-{i}"), "family": family, "label": label,
                    "request": {"messages": [{"role": "user", "content": format!("{text} ({i})")}]}})
                .to_string(),
            );
        }
    }
    lines.join("\n")
}

async fn run(args: &[&str], config: Option<&Path>) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    if let Some(config) = config {
        command.env("MODELROUTER_CONFIG", config);
    }
    let out = command.args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn train_auto_writes_a_model_that_evaluate_reads() {
    let data = temp_dir("train-auto");
    let set = data.join("set.jsonl");
    std::fs::write(&set, corpus()).unwrap();
    let model = data.join("model.json");
    let (ok, stdout, stderr) = run(
        &[
            "train-auto",
            "--corpus",
            set.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("# Training split"), "{stdout}");
    let config = data.join("config.toml");
    std::fs::write(&config, format!("[gateway.auto]\nmodel = {:?}\n", model)).unwrap();
    let (ok, stdout, stderr) = run(&["evaluate", set.to_str().unwrap()], Some(&config)).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("24 conversations: exact tier"), "{stdout}");
    let (ok, stdout, _) = run(
        &["evaluate", set.to_str().unwrap(), "--explain", "proofs-1"],
        Some(&config),
    )
    .await;
    assert!(
        ok && stdout.contains("proofs-1: labelled premium"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(
        &["evaluate", set.to_str().unwrap(), "--explain", "nope"],
        Some(&config),
    )
    .await;
    assert!(!ok && stderr.contains("no conversation `nope`"), "{stderr}");
    let (ok, stdout, stderr) = run(
        &["evaluate", set.to_str().unwrap(), "--family-curve", "3"],
        Some(&config),
    )
    .await;
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    assert!(
        stdout.contains("some of the other 5 families") && rows.len() == 1,
        "fewer than 10 others: one row, all of them\n{stdout}"
    );
    let one = data.join("one.jsonl");
    let corpus = corpus();
    let proofs: Vec<&str> = corpus.lines().filter(|l| l.contains("proofs")).collect();
    std::fs::write(&one, proofs.join("\n")).unwrap();
    let (ok, _, stderr) = run(
        &["evaluate", one.to_str().unwrap(), "--family-curve"],
        Some(&config),
    )
    .await;
    assert!(!ok && stderr.contains("at least two families"), "{stderr}");
    let (ok, _, stderr) = run(
        &["evaluate", "--family-curve", "--explain", "proofs-1"],
        Some(&config),
    )
    .await;
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");

    std::fs::write(&model, "{\"format\": \"modelrouter-auto-model/1\"").unwrap();
    let (ok, _, stderr) = run(&["evaluate", set.to_str().unwrap()], Some(&config)).await;
    assert!(!ok && stderr.contains("not valid JSON"), "{stderr}");
    std::fs::remove_dir_all(&data).ok();
}

#[tokio::test]
async fn evaluate_ends_quietly_when_its_reader_stops_early() {
    use std::os::unix::process::ExitStatusExt;
    let data = temp_dir("evaluate-pipe");
    let set = data.join("set.jsonl");
    std::fs::write(&set, corpus()).unwrap();
    let mut child = Command::new(BIN)
        .args(["evaluate", set.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the report is written, as `| head -0` would.
    drop(child.stdout.take());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("evaluate ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
    std::fs::remove_dir_all(&data).ok();
}

/// The score before it is rounded and held to 0–100 (base plus every share
/// but the one that holds it): a conversation the model is sure of sits at
/// 100 whatever the cuts.
fn raw(explained: &Value) -> f64 {
    let shares: f64 = explained["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["signal"] != "held_at_tier_edge")
        .map(|c| c["points"].as_f64().unwrap())
        .sum();
    explained["base"].as_f64().unwrap() + shares
}

async fn explain(up: &Up) -> Value {
    reqwest::Client::new()
        .post(format!("{}/v1/router/explain", up.url))
        .bearer_auth(up.printed_key.as_ref().unwrap())
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": PROOF}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn up_serves_the_configured_model_reloads_it_and_keeps_it_when_the_new_file_is_bad() {
    let data = temp_dir("auto-reload");
    let model = data.join("model.json");
    std::fs::write(&model, SHIPPED).unwrap();
    let config = data.join("config.toml");
    std::fs::write(
        &config,
        format!("catalog_poll_ms = 3600000\n[gateway.auto]\nmodel = {model:?}\n"),
    )
    .unwrap();
    let env = [("MODELROUTER_CONFIG", config.to_str().unwrap())];
    let mut running = test_support::deployment::up(BIN, &data, &env).await;
    let before = explain(&running).await;

    // Moving both cuts up by one unit of z lowers every raw score.
    let mut file: Value = serde_json::from_str(SHIPPED).unwrap();
    for cut in file["cuts"].as_array_mut().unwrap() {
        *cut = json!(cut.as_f64().unwrap() + 1.0);
    }
    std::fs::write(&model, file.to_string()).unwrap();
    running.hangup().await;
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = explain(&running).await;
        if raw(&after) != raw(&before) {
            break;
        }
    }
    assert!(
        raw(&after) < raw(&before),
        "SIGHUP loaded the new model: {before} then {after}"
    );

    std::fs::write(&model, "not a model").unwrap();
    running.hangup().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        raw(&explain(&running).await),
        raw(&after),
        "the bad file was refused"
    );
    running.child.kill().await.unwrap();

    let out = Command::new(BIN)
        .arg("up")
        .env("MODELROUTER_CONFIG", &config)
        .env("MODELROUTER_DATA_DIR", &data)
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "a bad model file stops the start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auto model is not valid JSON"), "{stderr}");
    std::fs::remove_dir_all(&data).ok();
}
