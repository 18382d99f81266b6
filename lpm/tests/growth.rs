//! The group pool grows on demand: tables that need many times the groups a fixed pool
//! used to hold load without an error while lookups run, and a load the pool cannot hold
//! leaves the FIB as it was.

mod common;

use common::data::Rng;
use ipnet::{Ipv4Net, Ipv6Net};
use lpm::{Fib4, Fib6, FibError, Qsbr};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Group counts a fixed pool of the usual size would hold; the tables here need more.
const OLD_V4_POOL: usize = 1 << 16;
const OLD_V6_POOL: usize = 1 << 18;

/// One /32 in each of 4 × 65 536 + 1 000 distinct /24s (each needs a group of its own),
/// inserted one by one while a reader thread looks up addresses of routes already in.
#[test]
fn an_ipv4_table_needing_four_times_the_old_pool_loads_under_lookups() {
    let qsbr = Qsbr::new();
    let mut fib = Fib4::new(qsbr.clone()).expect("fib");
    let count = 4 * OLD_V4_POOL as u32 + 1000;
    // An odd stride visits distinct /24s spread over the whole space.
    let net = |i: u32| {
        let slash24 = i.wrapping_mul(0x9e37_79b1) & 0x00ff_ffff;
        Ipv4Net::new_assert(Ipv4Addr::from_bits(slash24 << 8 | (i & 0xff)), 32)
    };
    let next_hop = |i: u32| i % 1000 + 1;
    let inserted = std::sync::atomic::AtomicU32::new(0);
    let done = AtomicBool::new(false);
    let reader = fib.reader();
    std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut q = qsbr.register();
            let mut checked = 0u64;
            let mut rng = Rng(0x6120_0001);
            while !done.load(Ordering::Acquire) {
                let upto = inserted.load(Ordering::Acquire);
                if upto == 0 {
                    continue;
                }
                let i = rng.below(upto as u64) as u32;
                assert_eq!(reader.lookup(net(i).addr()), Some(next_hop(i)), "route {i}");
                checked += 1;
                if checked.is_multiple_of(256) {
                    q.quiescent();
                }
            }
            checked
        });
        for i in 0..count {
            fib.insert(net(i), next_hop(i)).expect("insert");
            inserted.store(i + 1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        assert!(checker.join().expect("reader") > 0, "the reader looked up");
    });
    let stats = fib.group_stats();
    assert!(
        stats.in_use >= 4 * OLD_V4_POOL && stats.capacity >= stats.in_use,
        "{stats:?}"
    );
    for i in 0..count {
        assert_eq!(fib.lookup(net(i).addr()), Some(next_hop(i)), "{}", net(i));
        // The rest of the /24 has no route.
        let neighbour = Ipv4Addr::from_bits(net(i).addr().to_bits() ^ 0x80);
        assert_eq!(fib.lookup(neighbour), None, "{neighbour}");
    }
}

/// Random /64s (about five groups each) until the pool holds four times the old IPv6
/// pool, bulk-loaded; every route answers for its own addresses.
#[test]
fn an_ipv6_table_needing_four_times_the_old_pool_bulk_loads() {
    let mut fib = Fib6::new(Qsbr::new()).expect("fib");
    let mut rng = Rng(0x6120_0006);
    let mut routes: Vec<(Ipv6Net, u32)> = Vec::new();
    let target = 4 * OLD_V6_POOL;
    while fib.group_stats().in_use < target {
        let batch: Vec<(Ipv6Net, u32)> = (0..20_000)
            .map(|_| {
                let addr = Ipv6Addr::from_bits((0x2u128 << 124) | (rng.u128() >> 4));
                let nh = rng.below(1 << 20) as u32;
                (Ipv6Net::new_assert(addr, 64).trunc(), nh)
            })
            .collect();
        fib.bulk_load(batch.iter().copied()).expect("bulk load");
        routes.extend(batch);
    }
    // A later duplicate prefix replaced an earlier one's next hop: the last one counts.
    let answer: std::collections::HashMap<Ipv6Net, u32> = routes.iter().copied().collect();
    assert_eq!(fib.len(), answer.len());
    for (net, nh) in &answer {
        let host = Ipv6Addr::from_bits(net.network().to_bits() | 0xdead_beef);
        assert_eq!(fib.lookup(host), Some(*nh), "{net}");
    }
}

/// A bulk load past the pool's limit is refused as a whole: routes it added are gone, the
/// ones it replaced have their old next hops back, and every answer is the one from before.
#[test]
fn a_bulk_load_past_the_pool_limit_changes_nothing() {
    let mut fib = Fib4::with_groups(Qsbr::new(), 40).expect("fib");
    let before: Vec<(Ipv4Net, u32)> = vec![
        ("198.18.0.0/15".parse().expect("net"), 1),
        ("198.18.1.0/24".parse().expect("net"), 2),
        ("198.18.2.128/25".parse().expect("net"), 3),
        ("203.0.113.7/32".parse().expect("net"), 4),
    ];
    fib.bulk_load(before.iter().copied()).expect("first load");
    let probes: Vec<Ipv4Addr> = (0..4096u32)
        .map(|i| Ipv4Addr::from_bits(0xc612_0000 + i * 61))
        .chain(["203.0.113.7", "203.0.113.8"].map(|a| a.parse().expect("addr")))
        .collect();
    let answers: Vec<Option<u32>> = probes.iter().map(|&a| fib.lookup(a)).collect();
    let stats = fib.group_stats();

    // Replacements of every existing route, then a /25 in each of 64 more /24s: more
    // groups than the pool's 40.
    let mut load: Vec<(Ipv4Net, u32)> = before.iter().map(|&(n, nh)| (n, nh + 100)).collect();
    load.extend((0..64u32).map(|i| {
        let net = Ipv4Addr::from_bits(0xc612_4000 + (i << 8) + 128);
        (Ipv4Net::new_assert(net, 25), 50 + i)
    }));
    let err = fib.bulk_load(load);
    assert!(
        matches!(err, Err(FibError::GroupsExhausted { limit: 40 })),
        "{err:?}"
    );
    assert_eq!(fib.len(), before.len());
    for (net, nh) in &before {
        assert_eq!(fib.get(net), Some(*nh), "{net}");
    }
    let after: Vec<Option<u32>> = probes.iter().map(|&a| fib.lookup(a)).collect();
    assert_eq!(answers, after);
    assert_eq!(fib.group_stats().in_use, stats.in_use);

    let err = fib.bulk_load([("192.0.2.0/24".parse().expect("net"), lpm::MAX_NEXT_HOP + 1)]);
    assert!(
        matches!(err, Err(FibError::NextHopTooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(fib.len(), before.len());
}
