//! `cargo bench -p benches --bench lpm`: lookups, build and update replay of the FIB on the
//! RIS 2026 tables, with `prefix-trie` measured in the same run for the ratio.
//!
//! Keys: "in-table" are random addresses inside random prefixes of the table, "uniform" are
//! uniformly random addresses (for IPv6: random within 2000::/3, where routes are).

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benches::data::{self, Rng, TableFamily};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use lpm::{Family, Fib, Qsbr};
use prefix_trie::PrefixMap;

const KEYS: usize = 1 << 16;

/// Pins the calling thread to `core`. The machine's cores are read once, on the first
/// call: `get_core_ids` lists the *calling thread's* allowed cores, so a thread spawned by
/// one already pinned to core 0 would see only core 0 and stay there, sharing it with the
/// reader it is meant to run beside.
fn pin(core: usize) {
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    let pinned = cores
        .get(core)
        .is_some_and(|&id| core_affinity::set_for_current(id));
    assert!(pinned, "cannot pin to core {core} (cores {cores:?})");
}

/// The named key sets a family's lookups are measured on.
type KeySets<F> = [(&'static str, Vec<<F as Family>::Addr>); 2];

fn v4_sets(table: &[Ipv4Net]) -> KeySets<lpm::V4> {
    let mut rng = Rng(41);
    let in_table: Vec<Ipv4Addr> = data::keys::<lpm::V4>(table, KEYS * 2, &mut rng)
        .into_iter()
        .step_by(2)
        .collect();
    let uniform = (0..KEYS)
        .map(|_| Ipv4Addr::from_bits(rng.next_u64() as u32))
        .collect();
    [("in-table", in_table), ("uniform", uniform)]
}

fn v6_sets(table: &[Ipv6Net]) -> KeySets<lpm::V6> {
    let mut rng = Rng(61);
    let in_table: Vec<Ipv6Addr> = data::keys::<lpm::V6>(table, KEYS * 2, &mut rng)
        .into_iter()
        .step_by(2)
        .collect();
    let uniform = (0..KEYS)
        .map(|_| Ipv6Addr::from_bits((0x2u128 << 124) | (rng.u128() >> 3)))
        .collect();
    [("in-table", in_table), ("uniform", uniform)]
}

fn build<F: Family>(routes: &[(F::Net, u32)]) -> Fib<F> {
    let mut fib = Fib::<F>::new(Qsbr::new()).expect("fib");
    fib.bulk_load(routes.iter().copied()).expect("load");
    fib
}

fn lookups<F: Family>(
    c: &mut Criterion,
    family: &str,
    routes: &[(F::Net, u32)],
    sets: &[(&str, Vec<F::Addr>)],
) where
    F::Net: prefix_trie::Prefix + From<F::Addr>,
{
    let fib = build::<F>(routes);
    let reader = fib.reader();
    let reference: PrefixMap<F::Net, u32> = routes.iter().copied().collect();
    println!(
        "{family}: {} routes, {} bytes of lookup memory, {:.1} bytes/prefix",
        fib.len(),
        fib.bytes(),
        fib.bytes() as f64 / fib.len() as f64
    );
    let mut group = c.benchmark_group(format!("{family}/lookup"));
    group.throughput(Throughput::Elements(KEYS as u64));
    for (name, keys) in sets {
        group.bench_function(format!("{name}/tern-single"), |b| {
            b.iter(|| single_pass(&reader, keys))
        });
        let mut out = vec![0u32; 64];
        group.bench_function(format!("{name}/tern-batch64"), |b| {
            b.iter(|| {
                for chunk in keys.chunks(64) {
                    reader.lookup_batch(chunk, &mut out);
                    black_box(&out);
                }
            })
        });
        group.bench_function(format!("{name}/prefix-trie"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for &k in keys {
                    acc = acc
                        .wrapping_add(reference.get_lpm(&F::Net::from(k)).map_or(0, |(_, &nh)| nh));
                }
                black_box(acc)
            })
        });
    }
    group.finish();
}

fn build_time<F: Family>(c: &mut Criterion, family: &str, routes: &[(F::Net, u32)]) {
    let mut group = c.benchmark_group(format!("{family}/build"));
    group
        .sample_size(10)
        .throughput(Throughput::Elements(routes.len() as u64));
    group.bench_function("bulk-load", |b| {
        b.iter_batched(|| (), |_| build::<F>(routes), BatchSize::PerIteration)
    });
    group.finish();
}

/// Replays the 24 h stream once per iteration on a freshly loaded table (load not timed).
fn replay<F: Family>(
    c: &mut Criterion,
    family: &str,
    routes: &[(F::Net, u32)],
    updates: &[(bool, F::Net)],
) {
    let mut group = c.benchmark_group(format!("{family}/update-replay"));
    group
        .sample_size(10)
        .throughput(Throughput::Elements(updates.len() as u64));
    group.bench_function("24h-stream", |b| {
        b.iter_batched(
            || build::<F>(routes),
            |mut fib| apply_stream(&mut fib, updates, 0),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// One pass of single lookups over `keys`; the sum of the answers, so none is optimized
/// away.
fn single_pass<F: Family>(reader: &lpm::FibReader<F>, keys: &[F::Addr]) -> u32 {
    let mut acc = 0u32;
    for &k in keys {
        acc = acc.wrapping_add(reader.lookup(k).unwrap_or(0));
    }
    acc
}

/// Paces a writer: sleeps until `done` updates since `started` are due at `rate` per second.
fn wait_until_due(started: Instant, done: u64, rate: f64) {
    let due = Duration::from_secs_f64(done as f64 / rate);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

fn apply_stream<F: Family>(fib: &mut Fib<F>, updates: &[(bool, F::Net)], salt: u32) {
    for (i, (announce, net)) in updates.iter().enumerate() {
        if *announce {
            let nh = (i as u32 ^ salt) % 512;
            fib.insert(*net, nh).expect("insert");
        } else {
            fib.remove(*net).expect("remove");
        }
    }
}

/// A reader's single-lookup rate while the writer, on the other core, replays the stream
/// over and over; the same reader measured with the writer idle right before, for the ratio
/// (criterion), then both interleaved in short windows (`churn_interleaved`).
fn lookups_under_churn<F: Family>(
    c: &mut Criterion,
    family: &str,
    routes: &[(F::Net, u32)],
    updates: &[(bool, F::Net)],
    keys: &[F::Addr],
) {
    let qsbr = Qsbr::new();
    let mut fib = Fib::<F>::new(qsbr.clone()).expect("fib");
    fib.bulk_load(routes.iter().copied()).expect("load");
    let reader = fib.reader();
    let mut group = c.benchmark_group(format!("{family}/lookup-under-churn"));
    group.throughput(Throughput::Elements(keys.len() as u64));
    let mut guard = qsbr.register();
    let run = |guard: &mut lpm::QsbrThread, iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(single_pass(&reader, keys));
            guard.quiescent();
        }
        start.elapsed()
    };
    group.bench_function("writer-idle", |b| {
        b.iter_custom(|iters| run(&mut guard, iters))
    });
    // Flat out, the writer is a worst case far beyond any real feed (the RIS stream averages
    // 16 updates/s); 100k/s paced is a full-table-churn storm.
    for (name, pace) in [
        ("writer-replaying-flat-out", None),
        ("writer-replaying-100k-per-s", Some(100_000u64)),
    ] {
        let stop = AtomicBool::new(false);
        let updates_done = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                pin(1);
                let (mut n, mut salt) = (0u64, 1);
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    for chunk in updates.chunks(100) {
                        apply_stream(&mut fib, chunk, salt);
                        n += chunk.len() as u64;
                        if let Some(rate) = pace {
                            wait_until_due(started, n, rate as f64);
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    salt += 1;
                }
                (n, started.elapsed())
            });
            group.bench_function(name, |b| b.iter_custom(|iters| run(&mut guard, iters)));
            stop.store(true, Ordering::Relaxed);
            writer.join().expect("writer")
        });
        let (n, took) = updates_done;
        println!(
            "{family}: {name}: the writer applied {n} updates in {took:.1?} ({:.0}/s)",
            n as f64 / took.as_secs_f64()
        );
    }
    group.finish();
    churn_interleaved(family, &mut fib, &reader, &mut guard, updates, keys);
}

/// The writer-idle / writer-at-100k/s comparison again, interleaved: `ROUNDS` pairs of
/// short windows (writer paused, then replaying), so that this machine's drift (±15 % over
/// minutes) falls on both sides of each pair alike. Prints the median rate of each side
/// and the median of the per-round ratios.
fn churn_interleaved<F: Family>(
    family: &str,
    fib: &mut Fib<F>,
    reader: &lpm::FibReader<F>,
    guard: &mut lpm::QsbrThread,
    updates: &[(bool, F::Net)],
    keys: &[F::Addr],
) {
    const ROUNDS: usize = 25;
    const WINDOW: Duration = Duration::from_millis(200);
    const RATE: f64 = 100_000.0;
    let active = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let window = |guard: &mut lpm::QsbrThread| {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < WINDOW {
            black_box(single_pass(reader, keys));
            guard.quiescent();
            done += keys.len() as u64;
        }
        done as f64 / start.elapsed().as_secs_f64()
    };
    let (idle, busy, applied) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            pin(1);
            let mut chunks = updates.chunks(100).cycle();
            let (mut total, mut salt) = (0u64, 1);
            while !stop.load(Ordering::Relaxed) {
                if !active.load(Ordering::Relaxed) {
                    // Parked, not polling: an idle window has no writer activity at all.
                    std::thread::park_timeout(Duration::from_millis(50));
                    continue;
                }
                // A fresh pacing schedule per active window: no catching up on a pause.
                let (started, mut n) = (Instant::now(), 0u64);
                while active.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    let Some(chunk) = chunks.next() else { break };
                    apply_stream(fib, chunk, salt);
                    n += chunk.len() as u64;
                    wait_until_due(started, n, RATE);
                }
                total += n;
                salt += 1;
            }
            total
        });
        let (mut idle, mut busy) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            active.store(false, Ordering::Relaxed);
            idle.push(window(guard));
            active.store(true, Ordering::Relaxed);
            writer.thread().unpark();
            busy.push(window(guard));
        }
        active.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        (idle, busy, writer.join().expect("writer"))
    });
    let ratios: Vec<f64> = busy.iter().zip(&idle).map(|(b, i)| b / i).collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{family}: lookup under churn, interleaved ({ROUNDS} rounds of {WINDOW:?} each side): \
         writer idle {:.1} M/s, writer at {RATE:.0}/s {:.1} M/s (median per-round ratio {:.3}; \
         the writer applied {applied} updates, {:.0}/s while active)",
        median(&idle) / 1e6,
        median(&busy) / 1e6,
        median(&ratios),
        applied as f64 / (ROUNDS as f64 * WINDOW.as_secs_f64()),
    );
}

/// Every measurement of one family on its RIS table and update stream.
fn family<F: TableFamily>(c: &mut Criterion, name: &str, sets: fn(&[F::Net]) -> KeySets<F>)
where
    F::Net: prefix_trie::Prefix + From<F::Addr> + std::str::FromStr,
{
    pin(0);
    let table: Vec<F::Net> = data::table(F::RIS);
    let routes: Vec<(F::Net, u32)> = table.iter().map(|n| (*n, data::next_hop::<F>(n))).collect();
    let sets = sets(&table);
    lookups::<F>(c, name, &routes, &sets);
    build_time::<F>(c, name, &routes);
    let updates = data::updates(F::RIS_UPDATES);
    replay::<F>(c, name, &routes, &updates);
    lookups_under_churn::<F>(c, name, &routes, &updates, &sets[0].1);
}

fn v4(c: &mut Criterion) {
    family::<lpm::V4>(c, "ipv4", v4_sets);
}

fn v6(c: &mut Criterion) {
    family::<lpm::V6>(c, "ipv6", v6_sets);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = v4, v6
}
criterion_main!(benches);
