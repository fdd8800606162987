//! What the context-window guard costs on a ~100k-token prompt:
//! - bounds only: the byte-length bound, all the guard does when it decides;
//! - cold: every message new, so the whole prompt is tokenized;
//! - cold, varied: the same with text that does not repeat (pseudo-random words,
//!   numbers and punctuation), so no piece is hot in the CPU caches;
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

/// ~100k tokens of non-repeating text: words built from syllables, with numbers and punctuation.
fn varied_request() -> ChatRequest {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mer", "tis", "an", "dre", "vul", "pho", "ing", "ex", "qua", "zor", "ble",
        "st", "ru", "ne", "op", "tion", "al", "ger", "shi", "wy", "con", "ment",
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n) as usize
    };
    let mut text = String::new();
    while text.len() < 330_000 {
        text.push(' ');
        for _ in 0..1 + next(3) {
            text.push_str(SYLLABLES[next(SYLLABLES.len() as u64)]);
        }
        match next(12) {
            0 => text.push_str(", "),
            1 => text.push_str(&format!(" {}", next(100_000))),
            2 => text.push_str(".\n"),
            _ => {}
        }
    }
    serde_json::from_value(serde_json::json!({
        "model": "standard",
        "messages": [{"role": "user", "content": text}]
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
    let varied = varied_request();
    eprintln!(
        "varied prompt tokens: {}",
        counter.count(&Prompt::of(&varied))
    );
    c.bench_function("guard: 100k-token prompt, cold, varied text", |b| {
        b.iter(|| TokenCounter::default().count(&Prompt::of(&varied)))
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
