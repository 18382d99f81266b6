//! Model check of the FIB's publication protocol with `loom` (every interleaving and every
//! weak-memory outcome the C11 model allows, for one writer and one reader).
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release -p lpm --test loom_publication`
//!
//! The model is the protocol's core as `trie.rs` and `qsbr.rs` implement it, on a
//! two-entry "group" instead of 256 and with the same orderings:
//! * the writer fills a group with Relaxed stores, then links it with one Release store;
//! * it later collapses the group into a leaf (Release store on the parent), advances the
//!   epoch (AcqRel), waits until the reader has passed a quiescent state in that epoch (or
//!   gone offline), and only then reuses the group (here: poisons it);
//! * the reader loads the parent and the group entry with Acquire, and announces a
//!   quiescent state by storing the epoch it loaded (Acquire) with Release.
//!
//! Checked: a reader that sees the link sees the filled group, never the zeroed memory
//! from before; it never reads a reused (poisoned) entry; every answer is one that was
//! legal at some instant. (Weakening the link's Release store to Relaxed fails this test.
//! The Release on the quiescent-state store is not something loom can show necessary: it
//! does not model loads reading from later stores, so weakening that one passes.)
//!
//! `.ci/run` runs it (in its own target directory: `--cfg loom` rebuilds the crate).
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

const LINK: u32 = 1 << 31;
const OLD_LEAF: u32 = 10;
const GROUP_LEAF: [u32; 2] = [20, 21];
const NEW_LEAF: u32 = 30;
const POISON: u32 = 0xdead;
const OFFLINE: u64 = 0;

struct Model {
    parent: AtomicU32,
    group: [AtomicU32; 2],
    epoch: AtomicU64,
    seen: AtomicU64,
}

fn lookup(m: &Model, key: usize) -> u32 {
    let e = m.parent.load(Acquire);
    if e & LINK != 0 {
        m.group[key].load(Acquire)
    } else {
        e
    }
}

#[test]
fn readers_see_whole_groups_and_never_reused_memory() {
    loom::model(|| {
        let m = Arc::new(Model {
            parent: AtomicU32::new(OLD_LEAF),
            group: [AtomicU32::new(0), AtomicU32::new(0)],
            epoch: AtomicU64::new(1),
            seen: AtomicU64::new(1),
        });
        let reader = {
            let m = m.clone();
            loom::thread::spawn(move || {
                for key in 0..2 {
                    let answer = lookup(&m, key);
                    assert!(
                        answer == OLD_LEAF || answer == GROUP_LEAF[key] || answer == NEW_LEAF,
                        "key {key}: {answer:#x} was never a legal answer"
                    );
                    // Quiescent state: holds no reference into the tables.
                    let epoch = m.epoch.load(Acquire);
                    m.seen.store(epoch, Release);
                }
                m.seen.store(OFFLINE, Release);
            })
        };
        // Refine: fill, then publish.
        for (slot, leaf) in m.group.iter().zip(GROUP_LEAF) {
            slot.store(leaf, Relaxed);
        }
        m.parent.store(LINK, Release);
        // Collapse: unlink, start a grace period, wait it out, reuse.
        m.parent.store(NEW_LEAF, Release);
        let retired_in = m.epoch.fetch_add(1, AcqRel) + 1;
        loop {
            let seen = m.seen.load(Acquire);
            if seen == OFFLINE || seen >= retired_in {
                break;
            }
            loom::thread::yield_now();
        }
        for slot in &m.group {
            slot.store(POISON, Relaxed);
        }
        reader.join().unwrap();
    });
}
