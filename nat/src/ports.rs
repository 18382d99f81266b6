//! The external port space, shared by every shard: one atomic word per (external address,
//! protocol, port). A shard takes a port with a compare-and-swap, so two workers never
//! hand out the same port, and a packet arriving for an external port tells which shard
//! owns its mapping (the word holds the owner). A freed port is held down for a while
//! before anyone may take it again, so a late packet of the old flow never reaches a new
//! inside host (RFC 6056 §4, and the 120 s of the NAT issue).
//!
//! Word encoding: 0 free · 1..=255 taken by shard n−1 · `RESERVED` (static forwards) ·
//! otherwise held down until `word >> 8` (seconds, 24-bit wrapping clock).

use std::sync::atomic::{AtomicU32, Ordering};

pub const RESERVED: u32 = 0xff;
const HOLD_TAG: u32 = 0x80;

/// Protocols with a port space of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
    /// Protocols without ports: a single "port" 0 per external address.
    Other = 3,
}

impl Space {
    pub fn of(proto: u8) -> Space {
        match proto {
            crate::flow::TCP => Space::Tcp,
            crate::flow::UDP => Space::Udp,
            crate::flow::ICMP => Space::Icmp,
            _ => Space::Other,
        }
    }
}

/// The ports of one class: RFC 4787 REQ-3 keeps well-known source ports well-known.
pub fn class_range(space: Space, port: u16) -> (u16, u16) {
    match space {
        // Echo identifiers are not ports: all of them are alike.
        Space::Icmp => (0, u16::MAX),
        Space::Other => (0, 0),
        _ if port < 1024 => (1, 1023),
        _ => (1024, u16::MAX),
    }
}

pub struct PortMap {
    addrs: Vec<u32>,
    /// `addrs[0]` when the addresses are one contiguous range (a pool of consecutive
    /// addresses, or a single one): an address's index is then a subtraction, not a
    /// binary search.
    range_start: Option<u32>,
    /// `addrs.len() × 4 spaces × 65536` words, allocated zeroed (pages appear on use).
    words: Vec<AtomicU32>,
}

#[inline]
fn secs24(now_ms: u64) -> u32 {
    ((now_ms / 1000) as u32) & 0x00ff_ffff
}

impl PortMap {
    /// A port map for these external addresses (sorted and deduplicated here).
    pub fn new(mut addrs: Vec<u32>) -> PortMap {
        addrs.sort_unstable();
        addrs.dedup();
        let n = addrs.len() * 4 * 65536;
        let mut words = Vec::with_capacity(n);
        words.resize_with(n, || AtomicU32::new(0));
        let contiguous = addrs.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
        let range_start = addrs.first().copied().filter(|_| contiguous);
        PortMap {
            addrs,
            range_start,
            words,
        }
    }

    pub fn addresses(&self) -> &[u32] {
        &self.addrs
    }

    pub fn is_external(&self, addr: u32) -> bool {
        self.position(addr).is_some()
    }

    /// The index of `addr` among the external addresses.
    #[inline]
    fn position(&self, addr: u32) -> Option<usize> {
        match self.range_start {
            Some(start) => {
                let a = addr.wrapping_sub(start) as usize;
                (a < self.addrs.len()).then_some(a)
            }
            None => self.addrs.binary_search(&addr).ok(),
        }
    }

    #[inline]
    fn word(&self, addr: u32, space: Space, port: u16) -> Option<&AtomicU32> {
        let a = self.position(addr)?;
        self.words
            .get((a * 4 + space as usize) * 65536 + port as usize)
    }

    /// Starts loading the word of (addr, space, port).
    #[inline]
    pub fn prefetch(&self, addr: u32, space: Space, port: u16) {
        if let Some(word) = self.word(addr, space, port) {
            crate::mem::prefetch(word);
        }
    }

    /// The shard owning (addr, space, port), if it is taken by one.
    pub fn owner(&self, addr: u32, space: Space, port: u16) -> Option<usize> {
        let w = self.word(addr, space, port)?.load(Ordering::Acquire);
        (1..RESERVED).contains(&w).then(|| w as usize - 1)
    }

    /// Takes the port for `shard` if it is free (or its hold-down has passed).
    pub fn try_take(&self, addr: u32, space: Space, port: u16, shard: usize, now_ms: u64) -> bool {
        let Some(word) = self.word(addr, space, port) else {
            return false;
        };
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let free = current == 0 || (current > RESERVED && hold_over(current, now_ms));
            if !free {
                return false;
            }
            match word.compare_exchange_weak(
                current,
                shard as u32 + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives a port back; it may be taken again after `hold_ms`, at once when that is 0.
    /// A hold is kept in whole seconds (rounded up), so "no hold" must not become one: a
    /// host flooding new flows releases thousands of never-answered ports a second, and
    /// each held for up to a second would leave nothing for anybody else.
    pub fn release(&self, addr: u32, space: Space, port: u16, now_ms: u64, hold_ms: u64) {
        if let Some(word) = self.word(addr, space, port) {
            let value = match hold_ms {
                0 => 0,
                hold => secs24(now_ms + hold + 999) << 8 | HOLD_TAG,
            };
            word.store(value, Ordering::Release);
        }
    }

    /// Marks a port as a static forward's: never allocated.
    pub fn reserve(&self, addr: u32, space: Space, port: u16) {
        if let Some(word) = self.word(addr, space, port) {
            word.store(RESERVED, Ordering::Release);
        }
    }

    /// Reserves a port for a static forward added at run time, unless a shard holds it for a
    /// mapping now or another forward has it. A port in hold-down is taken (the operator's
    /// forward wins over the reuse delay). An address outside the map has nothing to
    /// protect: true.
    pub fn try_reserve(&self, addr: u32, space: Space, port: u16) -> bool {
        let Some(word) = self.word(addr, space, port) else {
            return true;
        };
        let mut current = word.load(Ordering::Relaxed);
        loop {
            if (1..=RESERVED).contains(&current) {
                return false;
            }
            match word.compare_exchange_weak(current, RESERVED, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Frees a reserved port (its forward was deleted).
    pub fn unreserve(&self, addr: u32, space: Space, port: u16) {
        if let Some(word) = self.word(addr, space, port) {
            let _ = word.compare_exchange(RESERVED, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Ports of `addr` in `space` taken by any shard or reserved (for `show`).
    pub fn in_use(&self, addr: u32, space: Space) -> usize {
        let Some(a) = self.position(addr) else {
            return 0;
        };
        let base = (a * 4 + space as usize) * 65536;
        self.words[base..base + 65536]
            .iter()
            .filter(|w| (1..=RESERVED).contains(&w.load(Ordering::Relaxed)))
            .count()
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 4
    }
}

fn hold_over(word: u32, now_ms: u64) -> bool {
    let until = word >> 8;
    let now = secs24(now_ms);
    // 24-bit serial comparison: now is at or after until.
    now.wrapping_sub(until) & 0x00ff_ffff < 0x0080_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Contiguous pools find an address by subtraction, others by binary search: both
    /// know exactly their own addresses, and each address has its own ports.
    #[test]
    fn addresses_are_found_in_ranges_and_scattered_sets() {
        let range = PortMap::new(vec![0xcb00_710c, 0xcb00_710a, 0xcb00_710b]);
        let scattered = PortMap::new(vec![0xcb00_7101, 0xc633_6401, 0xcb00_7109]);
        for (m, inside, outside) in [
            (
                &range,
                [0xcb00_710a, 0xcb00_710b, 0xcb00_710c],
                [0xcb00_7109, 0xcb00_710d, 0],
            ),
            (
                &scattered,
                [0xc633_6401, 0xcb00_7101, 0xcb00_7109],
                [0xcb00_7102, 0xcb00_7108, u32::MAX],
            ),
        ] {
            for a in inside {
                assert!(m.is_external(a), "{a:#x}");
                assert!(m.try_take(a, Space::Udp, 4000, 0, 0), "{a:#x}");
                assert_eq!(m.owner(a, Space::Udp, 4000), Some(0));
                assert_eq!(m.in_use(a, Space::Udp), 1);
            }
            for a in outside {
                assert!(!m.is_external(a), "{a:#x}");
                assert!(!m.try_take(a, Space::Udp, 4000, 0, 0), "{a:#x}");
            }
        }
    }

    #[test]
    fn runtime_forwards_reserve_only_ports_no_mapping_holds() {
        let m = PortMap::new(vec![0xcb007101]);
        assert!(m.try_take(0xcb007101, Space::Tcp, 8080, 0, 1_000));
        assert!(
            !m.try_reserve(0xcb007101, Space::Tcp, 8080),
            "a live mapping keeps its port"
        );
        assert!(m.try_reserve(0xcb007101, Space::Tcp, 8081));
        assert!(
            !m.try_reserve(0xcb007101, Space::Tcp, 8081),
            "one forward per port"
        );
        assert!(
            !m.try_take(0xcb007101, Space::Tcp, 8081, 1, 1_000),
            "never allocated"
        );
        m.unreserve(0xcb007101, Space::Tcp, 8081);
        assert!(
            m.try_take(0xcb007101, Space::Tcp, 8081, 1, 1_000),
            "free again"
        );
        m.release(0xcb007101, Space::Tcp, 8080, 1_000, 120_000);
        assert!(
            m.try_reserve(0xcb007101, Space::Tcp, 8080),
            "hold-down yields to a forward"
        );
        assert!(
            m.try_reserve(0x0a000001, Space::Tcp, 80),
            "not a NAT address: nothing to protect"
        );
    }

    #[test]
    fn take_release_hold_down() {
        let m = PortMap::new(vec![0xcb007101]);
        assert!(m.try_take(0xcb007101, Space::Udp, 4000, 0, 1_000));
        assert_eq!(m.owner(0xcb007101, Space::Udp, 4000), Some(0));
        assert!(!m.try_take(0xcb007101, Space::Udp, 4000, 1, 1_000));
        // Another protocol's port 4000 is a different port.
        assert!(m.try_take(0xcb007101, Space::Tcp, 4000, 1, 1_000));
        m.release(0xcb007101, Space::Udp, 4000, 2_000, 120_000);
        assert_eq!(m.owner(0xcb007101, Space::Udp, 4000), None);
        assert!(!m.try_take(0xcb007101, Space::Udp, 4000, 1, 100_000));
        assert!(m.try_take(0xcb007101, Space::Udp, 4000, 1, 123_000));
        assert_eq!(m.owner(0xcb007101, Space::Udp, 4000), Some(1));
    }

    #[test]
    fn a_port_released_without_hold_is_free_at_once() {
        let m = PortMap::new(vec![0xcb007101]);
        assert!(m.try_take(0xcb007101, Space::Tcp, 5000, 0, 1_500));
        m.release(0xcb007101, Space::Tcp, 5000, 1_500, 0);
        assert_eq!(m.owner(0xcb007101, Space::Tcp, 5000), None);
        assert!(m.try_take(0xcb007101, Space::Tcp, 5000, 1, 1_500));
        assert_eq!(m.owner(0xcb007101, Space::Tcp, 5000), Some(1));
    }

    #[test]
    fn reserved_and_unknown_addresses_are_never_taken() {
        let m = PortMap::new(vec![1]);
        m.reserve(1, Space::Tcp, 80);
        assert!(!m.try_take(1, Space::Tcp, 80, 0, 0));
        assert!(!m.try_take(2, Space::Tcp, 81, 0, 0));
        assert_eq!(m.in_use(1, Space::Tcp), 1);
    }
}
