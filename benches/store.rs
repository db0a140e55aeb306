//! The durable store's accept path (what every accepted webhook costs the
//! store-writer thread): `Store::accept` with batches of 1, 8 and 64 events,
//! each batch one durable commit (fsync), in a fresh data dir under
//! `$TMPDIR`. Only the accept is timed; each batch is then routed to no chat
//! (untimed), so the inbox stays as small as in a relay that keeps up.
//! `store_ack`: `Store::ack_many` of a worker's batch (32 sent deliveries
//! of one chat, with each one's hourly count and log line), the acks built
//! inside the timed part as the worker builds them; the batch is enqueued
//! untimed first. `cheap`: one delivery stays queued behind the batch, so
//! the ack is a cheap commit; `drained`: the ack empties the queue, which
//! commits durably.
//! Each runs on redb (`redb/...`) and, when `DISCOURSE_RELAY_TEST_PG` names
//! a database (scripts/ci/start-postgres), on PostgreSQL (`pg/...`, a fresh
//! schema per benchmark).
//! Results and the command: BENCHMARKS.md.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use discourse_relay::config::model::Filter;
use discourse_relay::delivery::pg_store::PgStore;
use discourse_relay::delivery::redb_store::RedbStore;
use discourse_relay::delivery::store::{
    AcceptOutcome, Ack, AttemptResult, DedupeKey, DeliveryRecord, InboundEvent, NewDelivery,
    Payload, Routed, Store,
};
use discourse_relay::ingest::Event;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn inbound(n: u64, sample: &Event) -> InboundEvent {
    let mut event = sample.clone();
    if let Some(p) = event.post.as_mut() {
        p.id = n;
    }
    let mut body_hash = [0u8; 32];
    body_hash[..8].copy_from_slice(&n.to_le_bytes());
    InboundEvent {
        dedupe: DedupeKey {
            event_id: Some(format!("https://forum.example.org#{n}")),
            body_hash,
        },
        event,
        due_at_ms: 1_000 + n,
        received_at_ms: 1_000 + n,
    }
}

/// A fresh store of `kind` ("redb" or "pg"), and what keeps it (a temp dir).
fn fresh(kind: &str, name: &str) -> (Box<dyn Store>, Option<tempfile::TempDir>) {
    if kind == "redb" {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open(&dir.path().join("relay.redb")).expect("open");
        return (Box::new(store), Some(dir));
    }
    let base = std::env::var("DISCOURSE_RELAY_TEST_PG").expect("DISCOURSE_RELAY_TEST_PG");
    let schema = format!("bench_{name}");
    let mut c = postgres::Client::connect(&base, postgres::NoTls).expect("connect");
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .expect("schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    (Box::new(PgStore::open(&url).expect("open")), None)
}

/// The backends to measure: redb, and PostgreSQL when a database is given.
fn kinds() -> Vec<&'static str> {
    match std::env::var("DISCOURSE_RELAY_TEST_PG") {
        Ok(url) if !url.is_empty() => vec!["redb", "pg"],
        _ => vec!["redb"],
    }
}

fn accept(c: &mut Criterion) {
    let sample = Event::sample("https://forum.example.org");
    let mut g = c.benchmark_group("store_accept");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (kind, batch) in kinds()
        .into_iter()
        .flat_map(|k| [(k, 1usize), (k, 8), (k, 64)])
    {
        g.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::new(format!("{kind}/durable"), batch);
        g.bench_with_input(id, &batch, |b, &batch| {
            let (store, _dir) = fresh(kind, &format!("accept_{batch}"));
            let mut n = 0u64;
            b.iter_custom(|iters| {
                let batches: Vec<Vec<InboundEvent>> = (0..iters)
                    .map(|_| {
                        (0..batch)
                            .map(|_| {
                                n += 1;
                                inbound(n, &sample)
                            })
                            .collect()
                    })
                    .collect();
                let mut spent = Duration::ZERO;
                for b in &batches {
                    let start = Instant::now();
                    let out = store.accept(b, 10_000 + n).expect("accept");
                    spent += start.elapsed();
                    let routed: Vec<Routed> = (out.iter())
                        .map(|o| match o {
                            AcceptOutcome::Stored(id) => Routed {
                                id: *id,
                                revision: None,
                                deliveries: vec![],
                            },
                            AcceptOutcome::Duplicate => panic!("no duplicates here"),
                        })
                        .collect();
                    store.route_many(&routed, 10_000 + n).expect("route");
                }
                spent
            });
        });
    }
    g.finish();
}

fn ack(c: &mut Criterion) {
    const BATCH: usize = 32;
    let sample = Event::sample("https://forum.example.org");
    let mut g = c.benchmark_group("store_ack");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(BATCH as u64));
    let cases = kinds()
        .into_iter()
        .flat_map(|k| [(k, "cheap"), (k, "drained")]);
    for (kind, case) in cases {
        let id = BenchmarkId::new(format!("{kind}/{case}"), BATCH);
        g.bench_function(id, |b| ack_batches(b, kind, case, &sample));
    }
    g.finish();
}

fn ack_batches(b: &mut criterion::Bencher<'_>, kind: &str, case: &str, sample: &Event) {
    const BATCH: usize = 32;
    let (store, _dir) = fresh(kind, &format!("ack_{case}"));
    let d = NewDelivery {
        chat: "general".into(),
        payload: Payload::Event {
            event: Box::new(sample.clone()),
            filter: Filter::Watch,
        },
    };
    if case == "cheap" {
        // Stays queued behind every batch: no ack empties the queue.
        store.enqueue(&d, 1).expect("enqueue");
    }
    let mut now = 1_700_000_000_000u64;
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            for _ in 0..BATCH {
                store.enqueue(&d, now).expect("enqueue");
            }
            let mut heads = store.heads("general", BATCH + 1).expect("heads");
            if case == "cheap" {
                heads.remove(0);
            }
            now += 1_000;
            let start = Instant::now();
            let acks: Vec<Ack> = (heads.iter())
                .map(|h| Ack {
                    seq: h.seq,
                    refs: vec![],
                    record: DeliveryRecord::of(
                        h,
                        now,
                        AttemptResult::Sent {
                            remote_id: Some("1700000000.000100".into()),
                        },
                    ),
                })
                .collect();
            store.ack_many("general", &acks).expect("ack");
            spent += start.elapsed();
        }
        spent
    });
}

criterion_group!(benches, accept, ack);
criterion_main!(benches);
