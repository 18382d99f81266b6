//! Answers of the FIB against a naive oracle and against the `prefix-trie` crate, on random
//! tables with interleaved inserts and removes and on the real tables in `testbed/data`.

mod common;

use common::data::{self, Rng, TableFamily};
use common::Oracle;
use ipnet::{Ipv4Net, Ipv6Net};
use lpm::{Change, Fib4, Fib6, Qsbr, NO_ROUTE, V4, V6};
use prefix_trie::PrefixMap;
use std::net::{Ipv4Addr, Ipv6Addr};

const ADDRESSES_PER_TABLE: usize = 1_000_000;

fn random_v4_net(rng: &mut Rng) -> Ipv4Net {
    // Lengths weighted towards the interesting boundaries around /24 and the first level.
    // A /0 or /1 rewrites millions of first-level entries: keep them rare.
    let len = match rng.below(200) {
        0 => rng.below(2) as u8,
        _ => [7, 8, 12, 16, 20, 22, 23, 24, 24, 25, 26, 28, 30, 31, 32, 32][rng.below(16) as usize],
    };
    // Cluster addresses in a few /12s so prefixes overlap a lot.
    let base = (rng.below(4) as u32) << 28 | (rng.next_u64() as u32 & 0x00ff_ffff);
    Ipv4Net::new_assert(Ipv4Addr::from_bits(base), len).trunc()
}

fn random_v6_net(rng: &mut Rng) -> Ipv6Net {
    let len = [
        0, 3, 15, 16, 17, 24, 29, 32, 40, 44, 47, 48, 56, 64, 96, 127, 128,
    ][rng.below(17) as usize];
    let base = (0x2001_0db8u128 << 96) | ((rng.below(4) as u128) << 92) | (rng.u128() >> 40);
    Ipv6Net::new_assert(Ipv6Addr::from_bits(base), len).trunc()
}

#[test]
fn random_v4_churn_matches_oracle_and_prefix_trie() {
    let mut rng = Rng(0x5eed_0004);
    let mut fib = Fib4::with_groups(Qsbr::new(), 4096).expect("fib");
    let mut oracle = Oracle::new(32);
    let mut reference: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    let mut live: Vec<Ipv4Net> = Vec::new();
    for round in 0..40 {
        for _ in 0..500 {
            if rng.below(3) == 0 && !live.is_empty() {
                let net = live.swap_remove(rng.below(live.len() as u64) as usize);
                let expected = oracle.remove(net.network().to_bits() as u128, net.prefix_len());
                assert_eq!(fib.remove(net).expect("remove"), expected, "remove {net}");
                reference.remove(&net);
            } else {
                let net = random_v4_net(&mut rng);
                let nh = rng.below(1000) as u32;
                oracle.insert(net.network().to_bits() as u128, net.prefix_len(), nh);
                fib.insert(net, nh).expect("insert");
                reference.insert(net, nh);
                live.push(net);
            }
        }
        let reader = fib.reader();
        let addrs: Vec<Ipv4Addr> = (0..5000)
            .map(|i| {
                if i % 2 == 0 && !live.is_empty() {
                    let net = live[rng.below(live.len() as u64) as usize];
                    Ipv4Addr::from_bits(
                        net.network().to_bits()
                            | (rng.next_u64() as u32
                                & !u32::MAX
                                    .checked_shl(32 - net.prefix_len() as u32)
                                    .unwrap_or(0)),
                    )
                } else {
                    Ipv4Addr::from_bits(
                        (rng.below(4) as u32) << 28 | (rng.next_u64() as u32 & 0x00ff_ffff),
                    )
                }
            })
            .collect();
        let mut batch = vec![0; addrs.len()];
        reader.lookup_batch(&addrs, &mut batch);
        for (addr, got) in addrs.iter().zip(&batch) {
            let expected = oracle.lookup(addr.to_bits() as u128);
            let trie = reference.get_lpm(&Ipv4Net::from(*addr)).map(|(_, &nh)| nh);
            assert_eq!(expected, trie, "oracle and prefix-trie disagree at {addr}");
            assert_eq!(
                reader.lookup(*addr),
                expected,
                "round {round} single lookup {addr}"
            );
            assert_eq!(
                *got,
                expected.unwrap_or(NO_ROUTE),
                "round {round} batch lookup {addr}"
            );
        }
        assert_eq!(fib.len(), reference.len(), "route count");
    }
    // Removing everything returns every group to the pool (after the grace period).
    let all: Vec<Change<Ipv4Net>> = fib.iter().map(|(net, _)| Change::Remove(net)).collect();
    fib.apply(&all).expect("remove all");
    fib.reclaim();
    assert!(fib.is_empty());
    assert_eq!(fib.bytes(), (1 << 24) * 4, "only the first level remains");
}

#[test]
fn random_v6_churn_matches_oracle_and_prefix_trie() {
    let mut rng = Rng(0x5eed_0006);
    let mut fib = Fib6::with_groups(Qsbr::new(), 1 << 15).expect("fib");
    let mut oracle = Oracle::new(128);
    let mut reference: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
    let mut live: Vec<Ipv6Net> = Vec::new();
    for round in 0..20 {
        for _ in 0..500 {
            if rng.below(3) == 0 && !live.is_empty() {
                let net = live.swap_remove(rng.below(live.len() as u64) as usize);
                let expected = oracle.remove(net.network().to_bits(), net.prefix_len());
                assert_eq!(fib.remove(net).expect("remove"), expected, "remove {net}");
                reference.remove(&net);
            } else {
                let net = random_v6_net(&mut rng);
                let nh = rng.below(1000) as u32;
                oracle.insert(net.network().to_bits(), net.prefix_len(), nh);
                fib.insert(net, nh).expect("insert");
                reference.insert(net, nh);
                live.push(net);
            }
        }
        let reader = fib.reader();
        let addrs = data::keys::<lpm::V6>(&live, 5000, &mut rng);
        let mut batch = vec![0; addrs.len()];
        reader.lookup_batch(&addrs, &mut batch);
        for (addr, got) in addrs.iter().zip(&batch) {
            let expected = oracle.lookup(addr.to_bits());
            let trie = reference.get_lpm(&Ipv6Net::from(*addr)).map(|(_, &nh)| nh);
            assert_eq!(expected, trie, "oracle and prefix-trie disagree at {addr}");
            assert_eq!(
                reader.lookup(*addr),
                expected,
                "round {round} single lookup {addr}"
            );
            assert_eq!(
                *got,
                expected.unwrap_or(NO_ROUTE),
                "round {round} batch lookup {addr}"
            );
        }
    }
    let all: Vec<Change<Ipv6Net>> = fib.iter().map(|(net, _)| Change::Remove(net)).collect();
    fib.apply(&all).expect("remove all");
    fib.reclaim();
    assert_eq!(fib.bytes(), (1 << 16) * 4, "only the first level remains");
}

/// Loads a real table, compares 10⁶ addresses with and without a default route, then
/// removes every tenth route and compares again.
fn real_table<F: TableFamily>(file: &str, seed: u64)
where
    F::Net: prefix_trie::Prefix + From<F::Addr> + std::str::FromStr + std::fmt::Display,
    F::Addr: std::fmt::Display,
{
    let table: Vec<F::Net> = data::table(file);
    let mut fib = lpm::Fib::<F>::new(Qsbr::new()).expect("fib");
    fib.bulk_load(table.iter().map(|n| (*n, data::next_hop::<F>(n))))
        .expect("load");
    let mut reference: PrefixMap<F::Net, u32> =
        table.iter().map(|n| (*n, data::next_hop::<F>(n))).collect();
    assert_eq!(fib.len(), reference.len());
    let mut rng = Rng(seed);
    let check =
        |fib: &lpm::Fib<F>, reference: &PrefixMap<F::Net, u32>, rng: &mut Rng, what: &str| {
            let live: Vec<F::Net> = reference.iter().map(|(n, _)| n).collect();
            let addrs = data::keys::<F>(&live, ADDRESSES_PER_TABLE, rng);
            let mut got = vec![0; addrs.len()];
            fib.reader().lookup_batch(&addrs, &mut got);
            let mut misses = 0;
            for (addr, got) in addrs.iter().zip(&got) {
                let expected = reference.get_lpm(&F::Net::from(*addr)).map(|(_, &nh)| nh);
                misses += expected.is_none() as usize;
                assert_eq!(*got, expected.unwrap_or(NO_ROUTE), "{file} {what}: {addr}");
            }
            assert_eq!(
                fib.lookup(addrs[0]),
                reference
                    .get_lpm(&F::Net::from(addrs[0]))
                    .map(|(_, &nh)| nh)
            );
            misses
        };
    let misses = check(&fib, &reference, &mut rng, "no default");
    assert!(
        misses > 10_000,
        "the uniform half must include addresses outside every prefix ({misses})"
    );
    let default = F::default_route();
    fib.insert(default, 511).expect("default");
    reference.insert(default, 511);
    assert_eq!(check(&fib, &reference, &mut rng, "default route"), 0);
    let removed: Vec<F::Net> = table.iter().step_by(10).copied().collect();
    let changes: Vec<_> = removed.iter().map(|n| Change::Remove(*n)).collect();
    fib.apply(&changes).expect("remove");
    for n in &removed {
        reference.remove(n);
    }
    fib.remove(default).expect("remove default");
    reference.remove(&default);
    assert_eq!(fib.len(), reference.len());
    check(
        &fib,
        &reference,
        &mut rng,
        "after removing every tenth route",
    );
}

#[test]
fn ris_2026_ipv4_table() {
    real_table::<V4>(V4::RIS, 0x7ab1e4);
}

#[test]
fn tier1_2023_ipv4_table_with_long_prefixes() {
    real_table::<V4>(V4::TIER1, 0x7ab1e4);
}

#[test]
fn ris_2026_ipv6_table() {
    real_table::<V6>(V6::RIS, 0x7ab1e6);
}

#[test]
fn tier1_2023_ipv6_table_with_long_prefixes() {
    real_table::<V6>(V6::TIER1, 0x7ab1e6);
}

#[test]
fn refused_writes_change_nothing() {
    let mut fib = Fib4::with_groups(Qsbr::new(), 17).expect("fib");
    let err = fib.insert("192.0.2.0/24".parse().expect("net"), lpm::MAX_NEXT_HOP + 1);
    assert!(matches!(err, Err(lpm::FibError::NextHopTooLarge { .. })));
    // 17 groups, 16 kept back for removes: one /25 fits, a second /24's /25 does not.
    fib.insert("192.0.2.0/25".parse().expect("net"), 1)
        .expect("first group");
    let err = fib.insert("198.51.100.128/25".parse().expect("net"), 2);
    assert!(
        matches!(err, Err(lpm::FibError::GroupsExhausted { .. })),
        "{err:?}"
    );
    assert_eq!(fib.len(), 1);
    assert_eq!(fib.lookup("198.51.100.200".parse().expect("addr")), None);
    assert_eq!(fib.lookup("192.0.2.1".parse().expect("addr")), Some(1));
}
