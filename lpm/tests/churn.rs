//! Route churn returns its memory: groups freed by withdrawals are reused once their grace
//! period is over, so announcing and withdrawing the same routes again and again keeps the
//! FIB's lookup memory where the first cycle left it.

use ipnet::Ipv4Net;
use lpm::{Fib4, Qsbr};
use std::net::Ipv4Addr;

/// 50 000 /32s spread over as many /24s (each needs a group of its own), announced and
/// withdrawn 50 times while a reader thread keeps passing quiescent states.
#[test]
fn fifty_cycles_of_fifty_thousand_host_routes_leave_the_memory_of_the_first() {
    let qsbr = Qsbr::new();
    let mut reader = qsbr.register();
    let mut fib = Fib4::new(qsbr.clone()).expect("fib");
    let routes: Vec<Ipv4Net> = (0..50_000u32)
        .map(|i| Ipv4Net::new_assert(Ipv4Addr::from_bits(0xc612_0000 + (i << 8) + 7), 32))
        .collect();
    let empty = fib.bytes();
    let mut after_first_withdraw = 0;
    let mut after_announce = Vec::new();
    let mut touched_after_first = 0;
    for cycle in 0..50 {
        for net in &routes {
            fib.insert(*net, 1).expect("insert");
        }
        after_announce.push(fib.bytes());
        reader.quiescent();
        for net in &routes {
            fib.remove(*net).expect("remove");
        }
        reader.quiescent();
        // No explicit `reclaim`: the control plane never calls it, writes must.
        if cycle == 0 {
            after_first_withdraw = fib.bytes();
            touched_after_first = fib.group_stats().high_water;
        }
    }
    let last = fib.bytes();
    // The pool's touched memory: what the process's RSS follows.
    let touched = fib.group_stats().high_water;
    assert!(
        touched <= touched_after_first + 64,
        "groups touched: {touched} after 50 cycles, {touched_after_first} after the first"
    );
    assert_eq!(fib.len(), 0);
    assert!(
        last.abs_diff(after_first_withdraw) * 100 <= after_first_withdraw,
        "after the last withdraw {last} B, after the first {after_first_withdraw} B"
    );
    let (first, worst) = (after_announce[0], after_announce.iter().max().copied());
    assert!(
        worst.is_some_and(|w| w.abs_diff(first) * 100 <= first),
        "announced tables: first {first} B, largest {worst:?} B"
    );
    // The last withdrawal's groups wait out their grace period; then all are free.
    reader.quiescent();
    fib.reclaim();
    assert_eq!(fib.bytes(), empty, "every group back in the pool");
}
