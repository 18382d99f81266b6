//! NAT chores of the worker: expiring sessions, answering the control plane's mailbox,
//! and reinjecting what a translation hands back.

use crate::counters::{DropReason, Event};
use crate::wire::{eth, icmp4};

use super::Worker;

impl Worker {
    /// Once per poll: the NAT clock, expiry with bounded work, ICMP port unreachable for
    /// SYNs held their 6 s, held fragments whose first fragment came, control requests.
    pub(super) fn nat_housekeeping(&mut self) {
        let Some(stage) = &mut self.nat else {
            return;
        };
        stage.tick();
        let now = stage.now;
        let timed_out = stage.shard.stats.fragments_timed_out;
        let due = stage.shard.expire(now, ::nat::shard::EXPIRE_BUDGET);
        let timed_out = stage.shard.stats.fragments_timed_out - timed_out;
        let released = stage.shard.released_fragments();
        // Held fragments were counted as taken when they arrived: their end is tern's.
        let origin = self.stats.origin();
        self.stats
            .drop_many(origin, DropReason::NatFragmentTimeout, timed_out);
        for (port, packet) in due {
            self.stats.event(Event::NatSynAnswered);
            let code = icmp4::CODE_PORT_UNREACHABLE;
            self.icmp_error_about(port, &packet, true, icmp4::DEST_UNREACHABLE, code, [0; 4]);
        }
        for (port, packet) in released {
            self.stats.event(Event::NatFragmentReleased);
            self.reinject(port, &packet);
        }
        if let (Some(rx), Some(stage)) = (&self.nat_requests, &mut self.nat) {
            while let Ok(req) = rx.try_recv() {
                crate::nat_mailbox::serve(stage, req);
            }
        }
    }

    /// Runs an IPv4 packet the NAT held back through the pipeline as if it had just
    /// arrived on `port`.
    pub(super) fn reinject(&mut self, port: u16, ip: &[u8]) {
        let Some(info) = self.ports.get(port as usize) else {
            return;
        };
        let origin = self.stats.origin();
        let Some(mut frame) = self.pool.alloc() else {
            self.stats.drop(origin, DropReason::NoBuffer);
            return;
        };
        let mut bytes = [0u8; crate::buf::MAX_FRAME];
        let len = eth::LEN + ip.len();
        if len > bytes.len() {
            self.pool.free(frame);
            return;
        }
        eth::write(&mut bytes, &info.mac, &[0; 6], eth::TYPE_IPV4);
        bytes[eth::LEN..len].copy_from_slice(ip);
        if !frame.fill(&bytes[..len]) {
            self.pool.free(frame);
            return;
        }
        // Not received again (the frame was counted when it was held), nor steered
        // (its shard held it) nor decapsulated (it was, on arrival).
        frame.ingress = port;
        let mut burst = vec![frame];
        self.as_originator(|w| w.run_burst(port, &mut burst, true));
    }
}
