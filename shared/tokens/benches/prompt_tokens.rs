//! Cost of counting a 100k-token prompt, cold (never seen) and warm (history seen before).

use criterion::{criterion_group, criterion_main, Criterion};
use openai::ChatRequest;
use tokens::{Prompt, TokenCounter};

fn conversation(turn: usize) -> ChatRequest {
    let para = "The quarterly report shows revenue grew 17% to $3.2bn while costs fell; \
                see `fn main() { println!(\"hi\"); }` for the reconciliation script.\n";
    let history: String = para.repeat(2_900);
    serde_json::from_value(serde_json::json!({
        "model": "standard",
        "messages": [
            {"role": "system", "content": "You are a careful analyst."},
            {"role": "user", "content": history},
            {"role": "user", "content": format!("Turn {turn}: summarise the above.")}
        ]
    }))
    .expect("valid request")
}

fn bench(c: &mut Criterion) {
    let req = conversation(0);
    let counter = TokenCounter::default();
    counter.warm_up();
    eprintln!("prompt tokens: {}", counter.count(&Prompt::of(&req)));
    c.bench_function("100k-token prompt, cold", |b| {
        b.iter(|| TokenCounter::default().count(&Prompt::of(&req)))
    });
    let mut turn = 0;
    c.bench_function("100k-token prompt, history cached", |b| {
        b.iter(|| {
            turn += 1;
            counter.count(&Prompt::of(&conversation(turn % 7)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
