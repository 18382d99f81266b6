//! The NAT stages around the FIB: pre-routing (conntrack lookup, DNAT, the return half of
//! SNAT) over the whole burst before the route lookup, and post-routing (SNAT) per frame
//! after TTL and MTU. The translation itself lives in the `nat` crate; this module maps
//! interface roles, verdicts and counters.

use std::sync::Arc;
use std::time::Instant;

use nat::{Lookahead, Post, Pre, Shard, Side};

use crate::buf::Frame;
use crate::counters::{DropReason, Event, Local};
use crate::pipeline::{Class, Meta, NatMark};
use crate::wire::{eth, ipv4};

/// Pre-routing's reading of each frame of one burst, kept so that post-routing does not
/// parse the packet again. Entry `i` is frame `i`'s, or `None` when the frame is not the
/// NAT's business (or another worker's). The entries are valid for one burst only, so
/// each burst has a number and a [`Reading`] carries it: a reading of an earlier burst
/// finds nothing, and post-routing then parses the packet itself.
#[derive(Default)]
pub struct Readings {
    burst: u32,
    entries: Vec<Option<(Side, Lookahead)>>,
}

/// Where post-routing finds a frame's reading: its place in burst number `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    burst: u32,
    index: u16,
}

impl Readings {
    fn new() -> Readings {
        Readings {
            burst: 0,
            entries: Vec::with_capacity(256),
        }
    }

    /// Empties the store for the next burst; readings of the last one find nothing.
    fn next_burst(&mut self) {
        self.burst = self.burst.wrapping_add(1);
        self.entries.clear();
    }

    fn reading(&self, index: usize) -> Reading {
        Reading {
            burst: self.burst,
            index: index as u16,
        }
    }

    /// The entry `r` names, if it is of this burst.
    #[inline]
    fn get(&self, r: Reading) -> Option<&(Side, Lookahead)> {
        if r.burst != self.burst {
            return None;
        }
        self.entries.get(r.index as usize)?.as_ref()
    }
}

/// Records pre-routing's verdict on a frame (`reading`: its entry in the burst's
/// readings, or `None` when the packet changed after it was read).
fn mark(pre: Pre, ip: &[u8], m: &mut Meta, reading: Option<Reading>, stats: &mut Local) {
    match pre {
        // A translated ICMP error passes with a new destination too.
        Pre::Pass => {
            m.nat = NatMark::Passed(reading);
            m.class = Class::V4 {
                dst: ipv4::dst_bits(ip),
            }
        }
        Pre::Session(h) => {
            m.nat = NatMark::Session(h, reading);
            m.class = Class::V4 {
                dst: ipv4::dst_bits(ip),
            };
            stats.event(Event::NatTranslated);
        }
        Pre::Drop(r) => m.class = Class::Drop(DropReason::nat(r)),
        Pre::Held => {
            m.class = Class::Absorbed;
            stats.event(Event::NatHeld);
        }
        Pre::Refuse(r) => m.class = Class::Refused(DropReason::nat(r)),
        // Going round twice would be a loop: a packet from the outside never loops.
        Pre::Recirculate { .. } => m.class = Class::Drop(DropReason::nat(nat::Reason::NoMapping)),
    }
}

/// A worker's NAT: its shard plus what the pipeline needs to drive it.
pub struct Stage {
    pub shard: Shard,
    /// Role of each interface slot (ports, then tunnels).
    roles: Vec<Option<Side>>,
    /// SNAT address for leaving by each slot, if it is an outside one.
    masquerade: Vec<Option<u32>>,
    /// The slot a packet that goes round (`Pre::Recirculate`) is taken to have come in by:
    /// an outside one, so that it is translated and routed as inbound.
    round_ingress: u16,
    /// The masquerade address when every outside slot has the same one: what a new flow's
    /// SNAT will use, known before routing (for `Shard::prefetch_session`).
    sole_masquerade: Option<u32>,
    epoch: Instant,
    /// Milliseconds since the stage started: the NAT's clock, read once per poll.
    pub now: u64,
    /// Shards (one per worker): with more than one, pre-routing first steers each frame
    /// to the shard that owns its session.
    pub shards: usize,
    /// The last burst's readings, for post-routing.
    readings: Readings,
}

impl Stage {
    pub fn new(
        shard: Shard,
        slots: usize,
        inside: &[usize],
        outside: &[(usize, Option<u32>)],
    ) -> Stage {
        let mut roles = vec![None; slots];
        let mut masquerade = vec![None; slots];
        for &i in inside {
            if let Some(r) = roles.get_mut(i) {
                *r = Some(Side::Inside);
            }
        }
        for &(o, addr) in outside {
            if let Some(r) = roles.get_mut(o) {
                *r = Some(Side::Outside);
                masquerade[o] = Some(addr.unwrap_or(0));
            }
        }
        let mut addresses: Vec<u32> = outside.iter().filter_map(|&(_, a)| a).collect();
        addresses.sort_unstable();
        addresses.dedup();
        let sole_masquerade = match addresses[..] {
            [a] => Some(a),
            _ => None,
        };
        let round_ingress = outside.first().map_or(0, |&(o, _)| o as u16);
        Stage {
            shard,
            round_ingress,
            roles,
            masquerade,
            sole_masquerade,
            epoch: Instant::now(),
            now: 0,
            shards: 1,
            readings: Readings::new(),
        }
    }

    pub fn tick(&mut self) {
        self.now = self.epoch.elapsed().as_millis() as u64;
    }

    pub fn role(&self, slot: usize) -> Option<Side> {
        self.roles.get(slot).copied().flatten()
    }

    /// Pre-routing over a burst received on `port`: IPv4 frames that came in by an inside or
    /// outside interface or tunnel meet their session; the class is updated for a
    /// translated destination. Three passes, so that the session lookups' cache misses
    /// overlap: read and hash every frame (starting its index bucket's load), start every
    /// session's load, then look up and translate. With `steer`, a frame whose session
    /// belongs to another worker's shard is marked `Class::Elsewhere` in the first pass
    /// (frames handed over by another worker are not steered again).
    pub fn prerouting(
        &mut self,
        frames: &mut [Frame],
        meta: &mut [Meta],
        port: u16,
        steer: bool,
        stats: &mut Local,
    ) {
        let steer = steer && self.shards > 1;
        // Taken out for the burst (the default left behind does not allocate).
        let mut readings = std::mem::take(&mut self.readings);
        readings.next_burst();
        let ahead = &mut readings.entries;
        for (frame, m) in frames.iter().zip(meta.iter_mut()) {
            m.nat = NatMark::Unseen;
            // By the slot the frame came in by: a decapsulated frame has its tunnel's role.
            let side = match m.class {
                Class::V4 { .. } => self.role(frame.ingress as usize),
                _ => None,
            };
            let Some(side) = side else {
                ahead.push(None);
                continue;
            };
            let ip = &frame.data()[eth::LEN..];
            let mut l = Lookahead::read(ip);
            if steer {
                let owner = self.shard.steer(ip, &l, side, self.shards, self.now);
                if owner != self.shard.id() {
                    m.class = Class::Elsewhere(owner as u16);
                    ahead.push(None);
                    continue;
                }
            }
            self.shard.hash_ahead(&mut l);
            ahead.push(Some((side, l)));
        }
        for (side, l) in ahead.iter().flatten() {
            self.shard.prefetch_session(l, *side, self.sole_masquerade);
        }
        for (i, ((frame, m), a)) in frames
            .iter_mut()
            .zip(meta.iter_mut())
            .zip(readings.entries.iter())
            .enumerate()
        {
            let Some((side, l)) = a else {
                continue;
            };
            let ip = &mut frame.data_mut()[eth::LEN..];
            let mut pre = self.shard.prerouting_ahead(ip, l, *side, port, self.now);
            let mut reading = Some(readings.reading(i));
            if let Pre::Recirculate { owner, .. } = pre {
                // Source translated: in again by the outside, here or on the owner's worker.
                frame.ingress = self.round_ingress;
                stats.event(Event::NatTranslated);
                if owner != self.shard.id() {
                    m.class = Class::Elsewhere(owner as u16);
                    continue;
                }
                // The reading no longer matches the packet: post-routing reads it anew.
                reading = None;
                let ip = &mut frame.data_mut()[eth::LEN..];
                pre = self.shard.prerouting(ip, Side::Outside, port, self.now);
            }
            let ip = &frame.data()[eth::LEN..];
            mark(pre, ip, m, reading, stats);
        }
        self.readings = readings;
    }

    /// Post-routing for a frame of the burst pre-routing last saw (`mark` is what it made
    /// of it), leaving by interface slot `egress` after coming in on `ingress`. `Err`
    /// carries the drop reason and whether to answer ICMP 3/13.
    pub fn postrouting(
        &mut self,
        frame: &mut Frame,
        mark: NatMark,
        ingress: usize,
        egress: usize,
    ) -> Result<bool, (DropReason, bool)> {
        let (handle, reading) = match mark {
            NatMark::Session(h, r) => (Some(h), r),
            NatMark::Passed(r) => (None, r),
            NatMark::Unseen => (None, None),
        };
        let snat = match (self.role(ingress), self.role(egress)) {
            (Some(Side::Inside), Some(Side::Outside)) => self.masquerade[egress],
            _ => None,
        };
        if handle.is_none() && snat.is_none() && self.role(ingress).is_none() {
            return Ok(false);
        }
        let ip = &mut frame.data_mut()[eth::LEN..];
        // Borrowed in place, not copied out: this runs for every NAT frame.
        let read = reading.and_then(|r| self.readings.get(r));
        let post = match read {
            Some((_, l)) => self.shard.postrouting_ahead(ip, l, handle, snat, self.now),
            None => self.shard.postrouting(ip, handle, snat, self.now),
        };
        match post {
            Post::Pass => Ok(false),
            Post::Translated => Ok(true),
            Post::Drop(r) => Err((DropReason::nat(r), false)),
            Post::Refuse(r) => Err((DropReason::nat(r), true)),
        }
    }

    /// A new rule set from the control plane.
    pub fn set_rules(&mut self, rules: Arc<nat::Rules>) {
        self.shard.set_rules(rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading names its burst: once the next burst starts it finds nothing (and
    /// post-routing parses the packet itself) instead of another frame's entry.
    #[test]
    fn a_reading_of_an_earlier_burst_finds_nothing() {
        let packet = ::wire::testing::Udp4::new([192, 0, 2, 2], 1234, [203, 0, 113, 2], 53).build();
        let mut readings = Readings::new();
        readings.next_burst();
        readings
            .entries
            .push(Some((Side::Inside, Lookahead::read(&packet))));
        let first = readings.reading(0);
        assert!(readings.get(first).is_some());
        readings.next_burst();
        readings
            .entries
            .push(Some((Side::Outside, Lookahead::read(&packet))));
        assert!(
            readings.get(first).is_none(),
            "a stale reading is not reused"
        );
        assert!(matches!(
            readings.get(readings.reading(0)),
            Some((Side::Outside, _))
        ));
    }
}
