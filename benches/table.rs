//! The session table's handshake path: create a session, detach, attach again, end it,
//! with the table empty and with 20,000 other live sessions, on one thread and on four
//! at once. Expiry pops only due sessions and the table is sharded, so the figures with
//! 20,000 sessions should match the empty table's.
//!
//! `cargo bench --bench table`

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use exactly_once::table::{Budget, SessionTable, TableConfig};
use std::hint::black_box;
use std::time::Duration;

fn table(live: usize) -> (SessionTable<Vec<u8>>, Vec<u64>) {
    let config = TableConfig {
        max_sessions: live + 1024,
        ..TableConfig::default()
    };
    let table = SessionTable::new(config, Budget::new(usize::MAX));
    let ids = (0..live)
        .map(|_| {
            let attached = table.create().expect("room");
            attached.retain(&vec![0; 8]);
            attached.id()
        })
        .collect();
    (table, ids)
}

/// One handshake's worth of table work.
fn create_resume_end(table: &SessionTable<Vec<u8>>) {
    let id = table.create().expect("room").id();
    drop(black_box(table.attach(id).expect("live")));
    table.end(id);
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_handshake");
    for live in [0, 20_000] {
        let (table, _ids) = table(live);
        group.bench_with_input(BenchmarkId::new("1_thread", live), &table, |b, table| {
            b.iter(|| create_resume_end(table))
        });
        group.bench_with_input(BenchmarkId::new("4_threads", live), &table, |b, table| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..4 {
                        s.spawn(|| (0..iters.div_ceil(4)).for_each(|_| create_resume_end(table)));
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = handshakes
}
criterion_main!(benches);
