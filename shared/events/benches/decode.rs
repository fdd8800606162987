//! What reading a publisher's batch record costs, per event: the ledger
//! decodes every usage event a gateway serves. The record is 64 copies of
//! the v2 usage fixture (a failed attempt, tokens, timings, origin), each
//! with its own id, as one JSON array. Baseline, in the same run: parsing
//! the same bytes into generic `serde_json::Value`s, the least any reader
//! of the JSON does. Run with `cargo bench -p events --bench decode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use events::Envelope;

/// The allocator the shipped binary decodes with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 64;

fn batch_record() -> Vec<u8> {
    let line = include_str!("../tests/fixtures/v2.jsonl")
        .lines()
        .next()
        .expect("the v2 fixture has a usage event");
    let template = Envelope::decode(line.as_bytes()).expect("the fixture decodes");
    let envelopes: Vec<Envelope> = (0..EVENTS)
        .map(|_| Envelope::new_at(template.at, template.event.clone()))
        .collect();
    Envelope::encode_all(&envelopes)
}

fn decode(c: &mut Criterion) {
    let record = batch_record();
    let mut group = c.benchmark_group("decode_batch_record");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("baseline_generic_json_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&record)))
    });
    group.bench_function("decode_all", |b| {
        b.iter(|| {
            let decoded = Envelope::decode_all(std::hint::black_box(&record));
            assert!(decoded.iter().all(Result::is_ok));
            decoded
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
