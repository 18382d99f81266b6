//! The RIS 24 h update stream replayed on the writer while a reader thread looks up
//! continuously. Every answer is checked against the next hops its address legally had
//! between the moment the lookup started and the moment it ended (one update more, since
//! the writer may be half-way through the next one). Zero violations allowed.
//!
//! Run it in release (`cargo test --release`): in debug the writer is too slow for the
//! reader to see much churn.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::data::{self, Rng, TableFamily};
use common::Oracle;
use lpm::{Family, Fib, Qsbr, NO_ROUTE};

/// What each sampled address answered after each update that changed it.
struct Timeline {
    /// Per address: (state, answer), sorted by state; state k = after k updates.
    changes: Vec<Vec<(usize, Option<u32>)>>,
}

impl Timeline {
    fn legal(&self, addr: usize, from: usize, to: usize) -> impl Iterator<Item = Option<u32>> + '_ {
        let changes = &self.changes[addr];
        let start = changes
            .partition_point(|&(state, _)| state <= from)
            .saturating_sub(1);
        changes[start..]
            .iter()
            .take_while(move |&&(state, _)| state <= to)
            .map(|&(_, nh)| nh)
    }
}

/// Next hop of an announcement: it changes with every update, as attributes do.
fn announced_next_hop(key: u128, len: u8, update: usize) -> u32 {
    data::next_hop_of(key ^ ((update as u128) << 7), len)
}

struct Replay<F: Family> {
    table: Vec<F::Net>,
    updates: Vec<(bool, F::Net)>,
    samples: Vec<F::Addr>,
    /// For each update, the sample inside its prefix.
    sample_of_update: Vec<u32>,
}

fn replay<F: Family>(
    replay: Replay<F>,
    bits: u8,
    key: impl Fn(&F::Net) -> (u128, u8),
    addr_key: impl Fn(F::Addr) -> u128,
) {
    let Replay {
        table,
        updates,
        samples,
        sample_of_update,
    } = replay;
    // Precompute every sample's timeline with the oracle.
    let started = std::time::Instant::now();
    let mut oracle = Oracle::new(bits);
    for net in &table {
        let (k, len) = key(net);
        oracle.insert(k, len, data::next_hop_of(k, len));
    }
    let sample_keys: Vec<u128> = samples.iter().map(|&a| addr_key(a)).collect();
    // Samples sorted by key: the ones an update can change are a contiguous run.
    let mut by_key: Vec<(u128, usize)> = sample_keys
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, i))
        .collect();
    by_key.sort_unstable();
    let mut changes: Vec<Vec<(usize, Option<u32>)>> = sample_keys
        .iter()
        .map(|&k| vec![(0, oracle.lookup(k))])
        .collect();
    for (i, (announce, net)) in updates.iter().enumerate() {
        let (k, len) = key(net);
        if *announce {
            oracle.insert(k, len, announced_next_hop(k, len, i));
        } else {
            oracle.remove(k, len);
        }
        let last = k
            | (u128::MAX >> (128 - bits as u32))
                .checked_shr(len as u32)
                .unwrap_or(0);
        let first_covered = by_key.partition_point(|&(sk, _)| sk < k);
        for &(sk, s) in by_key[first_covered..]
            .iter()
            .take_while(|&&(sk, _)| sk <= last)
        {
            let now = oracle.lookup(sk);
            if changes[s].last().map(|&(_, nh)| nh) != Some(now) {
                changes[s].push((i + 1, now));
            }
        }
    }
    let timeline = Timeline { changes };
    eprintln!(
        "timelines of {} samples computed in {:?}",
        samples.len(),
        started.elapsed()
    );
    let changing = timeline.changes.iter().filter(|c| c.len() > 1).count();
    assert!(
        changing > samples.len() / 4,
        "the samples must see churn ({changing} change)"
    );

    let qsbr = Qsbr::new();
    let mut fib = Fib::<F>::new(qsbr.clone()).expect("fib");
    fib.bulk_load(table.iter().map(|n| {
        let (k, len) = key(n);
        (*n, data::next_hop_of(k, len))
    }))
    .expect("load");
    let reader = fib.reader();
    let applied = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let total = updates.len();

    let (lookups, violations) = std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let mut guard = qsbr.register();
            let mut rng = Rng(0xc0ffee);
            let (mut lookups, mut violations) = (0u64, 0u64);
            let mut batch_addrs = [samples[0]; 16];
            let mut batch_index = [0usize; 16];
            let mut batch_out = [0u32; 16];
            while !done.load(Ordering::Acquire) || lookups < 1_000_000 {
                // Alternate single lookups and batches so both paths race the writer.
                let from = applied.load(Ordering::Acquire);
                if lookups % 2 == 0 {
                    // Mostly the address of the update in flight: that is where races are.
                    let s = match rng.below(4) {
                        0 => rng.below(samples.len() as u64) as usize,
                        _ => sample_of_update[from.min(total - 1)] as usize,
                    };
                    let got = reader.lookup(samples[s]);
                    let to = (applied.load(Ordering::Acquire) + 1).min(total);
                    lookups += 1;
                    if !timeline.legal(s, from, to).any(|nh| nh == got) {
                        violations += 1;
                    }
                } else {
                    for (a, i) in batch_addrs.iter_mut().zip(batch_index.iter_mut()) {
                        *i = rng.below(samples.len() as u64) as usize;
                        *a = samples[*i];
                    }
                    reader.lookup_batch(&batch_addrs, &mut batch_out);
                    let to = (applied.load(Ordering::Acquire) + 1).min(total);
                    for (&s, &got) in batch_index.iter().zip(&batch_out) {
                        let got = (got != NO_ROUTE).then_some(got);
                        lookups += 1;
                        if !timeline.legal(s, from, to).any(|nh| nh == got) {
                            violations += 1;
                        }
                    }
                }
                if lookups % 64 < 2 {
                    guard.quiescent();
                }
            }
            (lookups, violations)
        });
        for (i, (announce, net)) in updates.iter().enumerate() {
            let (k, len) = key(net);
            if *announce {
                fib.insert(*net, announced_next_hop(k, len, i))
                    .expect("insert");
            } else {
                fib.remove(*net).expect("remove");
            }
            applied.store(i + 1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        checker.join().expect("reader thread")
    });
    eprintln!("{total} updates replayed, {lookups} lookups checked, {violations} violations, {} routes, {} bytes", fib.len(), fib.bytes());
    assert_eq!(violations, 0);
    assert!(lookups >= 1_000_000);
    // And the final state is exactly the oracle's.
    for (s, &k) in sample_keys.iter().enumerate() {
        let last = timeline.changes[s].last().and_then(|&(_, nh)| nh);
        assert_eq!(
            fib.reader().lookup(samples[s]),
            last,
            "final answer for sample {s} ({k:x})"
        );
    }
}

/// One sample address inside each distinct prefix the stream touches (so the reader can
/// aim at the update in flight), then 1024 more from the table and uniformly random ones.
fn sample_plan<N: Copy + Ord, A: Copy>(
    updates: &[(bool, N)],
    mut pick: impl FnMut(N) -> A,
) -> (Vec<A>, Vec<u32>) {
    let mut index = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    let sample_of_update = updates
        .iter()
        .map(|&(_, net)| {
            *index.entry(net).or_insert_with(|| {
                samples.push(pick(net));
                samples.len() as u32 - 1
            })
        })
        .collect();
    (samples, sample_of_update)
}

/// The family's RIS update stream over its RIS table, checked against the oracle.
fn stream<F: TableFamily>(seed: u64)
where
    F::Net: std::str::FromStr + Ord,
{
    let table = data::table(F::RIS);
    let updates = data::updates(F::RIS_UPDATES);
    let mut rng = Rng(seed);
    let (mut samples, sample_of_update) =
        sample_plan(&updates, |n| data::keys::<F>(&[n], 1, &mut rng)[0]);
    samples.extend(data::keys::<F>(&table, 1024, &mut rng));
    replay::<F>(
        Replay {
            table,
            updates,
            samples,
            sample_of_update,
        },
        F::BITS as u8,
        F::net_bits,
        F::addr_bits,
    );
}

/// One test, the families in turn: the writer and the reader each get a core to themselves.
#[test]
fn ris_update_streams_under_concurrent_lookups() {
    stream::<lpm::V4>(0x5a_3b1e_5004);
    stream::<lpm::V6>(0x5a_3b1e_5006);
}
