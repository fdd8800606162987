//! What `model: "auto"` costs: reading and scoring a whole conversation of
//! about 2k and about 100k tokens (prose, code blocks, several turns) with
//! the shipped model, explanation included, with parsing the JSON body as
//! the baseline every request pays anyway.

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::auto::{decide, AutoConfig, Model};
use openai::ChatRequest;
use serde_json::json;

const PROSE: &str = "The service reads events from the queue, validates each payload against \
the schema, enriches it with the account's settings and writes the result to the warehouse. \
Last week the p99 latency doubled after the schema registry moved regions. ";
const CODE: &str = "```python\ndef enrich(event, settings):\n    if event['type'] not in settings.allowed:\n        raise ValueError(event['type'])\n    return {**event, 'region': settings.region}\n```\n";

/// A conversation of `turns` user/assistant pairs, each with prose and code.
fn conversation(turns: usize) -> String {
    let mut messages =
        vec![json!({"role": "system", "content": "You are a senior engineer. Answer precisely."})];
    for i in 0..turns {
        let text = format!("Turn {i}. {}{CODE}{}", PROSE.repeat(3), PROSE);
        messages.push(json!({"role": "user", "content": text}));
        messages.push(json!({"role": "assistant", "content": PROSE.repeat(2)}));
    }
    messages.push(json!({"role": "user", "content": "Find the root cause of the latency regression and propose a fix."}));
    json!({"model": "auto", "messages": messages}).to_string()
}

/// A single user turn of about 2k tokens, all of it instruction: the worst
/// case for the text features (no material, no earlier turns).
fn one_instruction() -> String {
    let text = format!(
        "{} Find the root cause and propose a fix.",
        PROSE.repeat(40)
    );
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]}).to_string()
}

fn bench(c: &mut Criterion) {
    let config = AutoConfig::default();
    let model = Model::shipped();
    let tokenizer = bpe_openai::o200k_base();
    let bodies = [
        ("2k tokens", conversation(6)),
        ("100k tokens", conversation(315)),
        ("2k tokens in one instruction", one_instruction()),
    ];
    for (name, body) in bodies {
        let request: ChatRequest = serde_json::from_str(&body).expect("request");
        let tokens: usize = request
            .messages
            .iter()
            .flat_map(|m| m.texts())
            .map(|t| tokenizer.count(t))
            .sum();
        eprintln!("{name}: {tokens} tokens, {} bytes", body.len());
        c.bench_function(&format!("parse the body, {name} (baseline)"), |b| {
            b.iter(|| serde_json::from_str::<ChatRequest>(&body).expect("request"))
        });
        c.bench_function(&format!("auto score, {name}"), |b| {
            b.iter(|| decide(&request, &model, &config))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
