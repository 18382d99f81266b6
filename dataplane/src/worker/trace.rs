//! The worker's side of a packet trace (trace/): what each stage left for the frames of
//! a burst that are traced, and what their dispatch did, read off the worker's counters
//! and transmit queues around it. Only bursts with traced frames come here.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::forward::Hop;
use super::Worker;
use crate::buf::Frame;
use crate::counters::{DropReason, Event};
use crate::counters::{PortCounts, DROP_REASONS, EVENTS};
use crate::pipeline::{Class, Meta, NatMark};
use crate::trace::{describe, Record};

/// The worker's counters and queue lengths before a traced frame's dispatch.
pub(super) struct Before {
    row: usize,
    drops: [u64; DROP_REASONS],
    own_drops: [u64; DROP_REASONS],
    queued: Vec<usize>,
    events: [u64; EVENTS],
    counts: PortCounts,
}

impl Worker {
    /// Records for the frames of this burst the trace claims, with what came in.
    pub(super) fn trace_received(&self, port: u16, frames: &[Frame]) -> Vec<Record> {
        let claimed = self.tracer.claim(port, frames.len());
        let name = &self.ports[port as usize].name;
        frames[..claimed]
            .iter()
            .map(|f| {
                let mut r = self.tracer.start(self.id, name);
                r.step("rx", describe::frame(f.data()));
                r
            })
            .collect()
    }

    /// What the parse stage (and decapsulation) made of each traced frame.
    pub(super) fn trace_parsed(&self, trace: &mut [Record], frames: &[Frame], meta: &[Meta]) {
        for ((r, f), m) in trace.iter_mut().zip(frames).zip(meta) {
            if f.ingress != f.port {
                let tunnel = self.interface_name(f.ingress);
                r.step(
                    "decap",
                    format!("from tunnel {tunnel}: {}", describe::frame(f.data())),
                );
            }
            r.step("parse", class(&m.class));
        }
    }

    /// What NAT pre-routing did.
    pub(super) fn trace_nat(&self, trace: &mut [Record], frames: &[Frame], meta: &[Meta]) {
        for ((r, f), m) in trace.iter_mut().zip(frames).zip(meta) {
            let what = match (m.nat, m.class) {
                (_, Class::Elsewhere(w)) => format!("its session is worker {w}'s"),
                (_, Class::Absorbed) => "held".into(),
                (_, Class::Refused(reason)) => format!("refused: {}", reason.name()),
                (NatMark::Session(..), _) => {
                    format!("session; now {}", describe::frame(f.data()))
                }
                (NatMark::Passed(_), _) => "no session: post-routing decides".into(),
                (NatMark::Unseen, _) => continue,
            };
            r.step("nat", what);
        }
    }

    /// The FIB's answer and the adjacency it points at.
    pub(super) fn trace_routed(&self, trace: &mut [Record], frames: &[Frame], meta: &[Meta]) {
        for ((r, f), m) in trace.iter_mut().zip(frames).zip(meta) {
            if !matches!(m.class, Class::V4 { .. } | Class::V6 { .. }) {
                continue;
            }
            let what = if m.next_hop == lpm::NO_ROUTE {
                "no route".to_string()
            } else {
                let hop = self.hop(m.next_hop, f);
                format!("next hop {}: {}", m.next_hop, self.hop_text(hop))
            };
            r.step("fib", what);
        }
    }

    /// What a traced frame's dispatch may change, taken just before it (into
    /// `trace_before`: kept out of the burst loop's stack frame).
    #[inline(never)]
    pub(super) fn trace_before(&mut self, frame: &Frame) {
        let row = frame.port as usize;
        let origin = self.stats.origin() as usize;
        self.trace_snapshot = Some(Box::new(Before {
            row,
            drops: self.stats.drops[row],
            own_drops: self.stats.drops[origin],
            queued: self.tx.iter().map(Vec::len).collect(),
            events: self.stats.events,
            counts: self.stats.ports[row],
        }));
    }

    /// What became of a traced frame, from what its dispatch changed: the frames it left
    /// as (forwarded, fragments, an ICMP error about it), a drop reason, or what tern
    /// did with it.
    #[inline(never)]
    pub(super) fn trace_after(&mut self, r: &mut Record) {
        let Some(before) = self.trace_snapshot.take() else {
            return;
        };
        for (p, q) in self.tx.iter().enumerate() {
            for f in q.iter().skip(before.queued.get(p).copied().unwrap_or(0)) {
                let name = &self.ports[p].name;
                r.step("tx", format!("{name}: {}", describe::frame(f.data())));
            }
        }
        let dropped = |now: &[u64], before: &[u64]| -> Vec<&'static str> {
            DropReason::ALL
                .iter()
                .zip(now.iter().zip(before))
                .filter(|(_, (n, b))| n > b)
                .map(|(reason, _)| reason.name())
                .collect()
        };
        for reason in dropped(&self.stats.drops[before.row], &before.drops) {
            r.step("drop", reason.to_string());
        }
        let origin = self.stats.origin() as usize;
        for reason in dropped(&self.stats.drops[origin], &before.own_drops) {
            r.step("drop", format!("{reason} (a frame tern sent about it)"));
        }
        let now = self.stats.ports[before.row];
        let handed = Event::HandedOff as usize;
        if self.stats.events[handed] > before.events[handed] {
            r.step("handoff", "to the worker that owns its NAT session".into());
        }
        if now.punted > before.counts.punted {
            r.step(
                "punt",
                "to the control plane: its neighbour is being resolved".into(),
            );
        }
        if now.local > before.counts.local {
            r.step(
                "local",
                "taken by tern (answered, learned from, held, or to the host interface)".into(),
            );
        }
    }

    fn hop_text(&self, hop: Hop) -> String {
        match hop {
            Hop::Local => "local: one of tern's addresses".into(),
            Hop::Broadcast => "broadcast".into(),
            Hop::Send { port, mac } => {
                let mac = crate::config::format_mac(&mac);
                format!("neighbor {mac} on {}", self.interface_name(port))
            }
            Hop::Resolve { port, ip: Some(ip) } => {
                format!("{ip} on {}, not resolved yet", self.interface_name(port))
            }
            Hop::Resolve { port, ip: None } => {
                format!(
                    "connected on {}, not resolved yet",
                    self.interface_name(port)
                )
            }
            Hop::Tunnel { tunnel, via } => {
                let name = self.interface_name(self.ports.len() as u16 + tunnel);
                format!("tunnel {name}, outer packets by next hop {via}")
            }
            Hop::Missing => "missing adjacency".into(),
        }
    }

    /// A port's or a tunnel's name by its interface slot (ports first, then tunnels).
    fn interface_name(&self, slot: u16) -> String {
        let slot = slot as usize;
        match self.ports.get(slot) {
            Some(p) => p.name.clone(),
            None => self
                .tunnels
                .get((slot - self.ports.len()) as u16)
                .map_or_else(|| format!("#{slot}"), |t| t.spec.name.clone()),
        }
    }
}

fn class(c: &Class) -> String {
    match *c {
        Class::Drop(reason) => format!("drop: {}", reason.name()),
        Class::Arp => "ARP for tern".into(),
        Class::V4 { dst } => format!("IPv4 to {}", Ipv4Addr::from_bits(dst)),
        Class::V6 { dst } => format!("IPv6 to {}", Ipv6Addr::from_bits(dst)),
        Class::V6Multicast => "IPv6 to a group tern listens to".into(),
        Class::Absorbed => "taken by a stage".into(),
        Class::Refused(reason) => format!("refused: {}", reason.name()),
        Class::Elsewhere(w) => format!("for worker {w}"),
    }
}
