//! What the context-window guard costs on a ~100k-token prompt:
//! - bounds only: the byte-length bound, all the guard does when it decides;
//! - cold: every message new, so the whole prompt is tokenized;
//! - history cached: a conversation whose long history was seen on an earlier turn.

use criterion::{criterion_group, criterion_main, Criterion};
use openai::ChatRequest;
use tokens::{Prompt, TokenCounter};

fn conversation(turn: usize) -> ChatRequest {
    let para = "The quarterly report shows revenue grew 17% to $3.2bn while costs fell; \
                see `fn main() { println!(\"hi\"); }` for the reconciliation script.\n";
    serde_json::from_value(serde_json::json!({
        "model": "standard",
        "messages": [
            {"role": "system", "content": "You are a careful analyst."},
            {"role": "user", "content": para.repeat(2_900)},
            {"role": "user", "content": format!("Turn {turn}: summarise the above.")}
        ]
    }))
    .expect("valid request")
}

fn bench(c: &mut Criterion) {
    let turns: Vec<ChatRequest> = (0..8).map(conversation).collect();
    let counter = TokenCounter::default();
    counter.warm_up();
    eprintln!("prompt tokens: {}", counter.count(&Prompt::of(&turns[0])));

    c.bench_function("guard: byte bound only", |b| {
        b.iter(|| Prompt::of(&turns[0]).upper_bound())
    });
    c.bench_function("guard: 100k-token prompt, cold", |b| {
        b.iter(|| TokenCounter::default().count(&Prompt::of(&turns[0])))
    });
    let mut turn = 0;
    c.bench_function("guard: 100k-token prompt, history cached", |b| {
        b.iter(|| {
            turn = (turn + 1) % turns.len();
            counter.count(&Prompt::of(&turns[turn]))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
