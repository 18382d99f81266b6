//! Two shards, as two workers run them: a packet may arrive at either worker (the receive
//! queue decides), is steered once, and is translated by the shard that owns its session.
//! Both directions of every flow must meet the same shard.

mod packets;

use std::sync::Arc;

use nat::flow::{ACK, SYN};
use nat::rules::{Endpoint, Filtering, Frontend, Rules};
use nat::{PortMap, Post, Pre, Shard, Side};
use packets::*;

const X: &str = "203.0.113.1";
const SHARDS: usize = 2;

struct Workers {
    shards: Vec<Shard>,
    x: u32,
}

impl Workers {
    fn new(f: impl FnOnce(&mut Rules)) -> Workers {
        let mut rules = Rules::new(7);
        rules.capacity = 4096;
        f(&mut rules);
        let ports = Arc::new(PortMap::new(vec![a(X)]));
        for fe in &rules.frontends {
            ports.reserve(
                fe.external.addr,
                nat::ports::Space::of(fe.proto),
                fe.external.port,
            );
        }
        let rules = Arc::new(rules);
        Workers {
            shards: (0..SHARDS)
                .map(|id| Shard::new(id, rules.clone(), ports.clone()))
                .collect(),
            x: a(X),
        }
    }

    /// The owner of `p` as worker `at` steers it.
    fn steer(&mut self, at: usize, side: Side, p: &[u8], now: u64) -> usize {
        let ahead = self.shards[at].lookahead(p);
        self.shards[at].steer(p, &ahead, side, SHARDS, now)
    }

    /// A packet received by worker `at` on `side`: steered, then pre- and post-routing on
    /// the owner (SNAT to X when it came from the inside), as the dataplane does it: a
    /// packet that goes round (`Pre::Recirculate`) meets pre-routing again as from the
    /// outside, on the shard it names. Returns the last owner and the packet.
    fn deliver(
        &mut self,
        at: usize,
        mut side: Side,
        mut p: Vec<u8>,
        now: u64,
    ) -> Result<(usize, Vec<u8>), String> {
        let mut owner = self.steer(at, side, &p, now);
        let mut pre = self.shards[owner].prerouting(&mut p, side, 0, now);
        if let Pre::Recirculate { owner: next, .. } = pre {
            (owner, side) = (next, Side::Outside);
            pre = self.shards[owner].prerouting(&mut p, side, 0, now);
        }
        let s = &mut self.shards[owner];
        let h = match pre {
            Pre::Pass => None,
            Pre::Session(h) => Some(h),
            other => return Err(format!("{other:?}")),
        };
        let snat = (side == Side::Inside).then_some(self.x);
        match s.postrouting(&mut p, h, snat, now) {
            Post::Pass | Post::Translated => Ok((owner, p)),
            other => Err(format!("{other:?}")),
        }
    }

    /// The external port of `h:port`'s mapping, made by a flow to an outside host.
    fn mapping_of(&mut self, h: u32, port: u16) -> u16 {
        let r = a("198.51.100.7");
        let (_, out) = self
            .deliver(0, Side::Inside, udp(h, port, r, 3478), 0)
            .unwrap();
        sport(&out)
    }

    /// Two inside hosts whose homes are different shards.
    fn hosts_on_both_shards(&self) -> (u32, u32) {
        let home = |h: u32| self.shards[0].home(h, SHARDS);
        let h1 = a("192.0.2.10");
        let h2 = (h1 + 1..h1 + 64).find(|&h| home(h) != home(h1)).unwrap();
        (h1, h2)
    }

    fn check(&self) {
        for s in &self.shards {
            s.check().unwrap();
        }
    }
}

#[test]
fn both_directions_of_every_flow_meet_one_shard_whichever_worker_receives_them() {
    let mut w = Workers::new(|_| {});
    let r = a("198.51.100.7");
    let mut homes = [0usize; SHARDS];
    for i in 0..200u32 {
        let h = a("192.0.2.10") + i % 40;
        let port = 10_000 + i as u16;
        // The request arrives at one worker, the reply at the other.
        let at = (i % 2) as usize;
        let (owner, out) = w
            .deliver(at, Side::Inside, udp(h, port, r, 53), i as u64)
            .unwrap();
        assert_eq!(owner, w.shards[0].home(h, SHARDS));
        homes[owner] += 1;
        assert_eq!(src(&out), w.x);
        let reply = udp(r, 53, w.x, sport(&out));
        let (back_owner, back) = w.deliver(1 - at, Side::Outside, reply, i as u64).unwrap();
        assert_eq!(
            back_owner, owner,
            "flow {i}: the reply met its session's shard"
        );
        assert_eq!((dst(&back), dport(&back)), (h, port));
        assert_checksums(&back);
    }
    assert!(
        homes.iter().all(|&n| n > 20),
        "both shards own flows: {homes:?}"
    );
    let sessions: usize = w.shards.iter().map(|s| s.sessions().len()).sum();
    assert_eq!(sessions, 200, "one session per flow, on one shard");
    w.check();
}

#[test]
fn an_inside_hosts_mappings_stay_endpoint_independent_across_workers() {
    let mut w = Workers::new(|r| r.filtering = Filtering::EndpointIndependent);
    let h = a("192.0.2.10");
    let mut external = Vec::new();
    for (i, r) in ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
        .iter()
        .enumerate()
    {
        let (_, out) = w
            .deliver(i % 2, Side::Inside, udp(h, 5000, a(r), 53), 0)
            .unwrap();
        external.push((src(&out), sport(&out)));
    }
    external.dedup();
    assert_eq!(
        external.len(),
        1,
        "one mapping for every destination: {external:?}"
    );
}

#[test]
fn dnat_replies_from_the_backend_meet_the_clients_shard() {
    let backend = Endpoint {
        addr: a("192.0.2.100"),
        port: 80,
    };
    let web = Endpoint {
        addr: a(X),
        port: 8080,
    };
    let mut w = Workers::new(|r| {
        r.add_frontend(Frontend::new("web".into(), 6, web, vec![backend]))
            .unwrap()
    });
    for i in 0..50u32 {
        let c = a("198.51.100.20") + i;
        let at = (i % 2) as usize;
        let (owner, p) = w
            .deliver(at, Side::Outside, tcp(c, 33000, w.x, 8080, SYN), 1)
            .unwrap();
        assert_eq!((dst(&p), dport(&p)), (backend.addr, 80));
        let reply = tcp(backend.addr, 80, c, 33000, SYN | ACK);
        let (back_owner, back) = w.deliver(1 - at, Side::Inside, reply, 2).unwrap();
        assert_eq!(back_owner, owner);
        assert_eq!((src(&back), sport(&back), dst(&back)), (w.x, 8080, c));
        assert_checksums(&back);
    }
    w.check();
}

#[test]
fn hairpin_between_hosts_of_different_shards() {
    let mut w = Workers::new(|_| {});
    let (h1, h2) = w.hosts_on_both_shards();
    let r = a("198.51.100.7");
    // h2 has a mapping (on its home shard), h1 sends to it from the other shard's home.
    let e2 = w.mapping_of(h2, 6000);
    let (_, p) = w
        .deliver(1, Side::Inside, udp(h1, 5000, w.x, e2), 1)
        .unwrap();
    assert_eq!((dst(&p), dport(&p)), (h2, 6000), "reached h2's mapping");
    assert_eq!(src(&p), w.x, "from the external address");
    assert_checksums(&p);
    // h2 answers what it saw, received by either worker.
    let (seen_addr, seen_port) = (src(&p), sport(&p));
    for at in 0..SHARDS {
        let (_, back) = w
            .deliver(at, Side::Inside, udp(h2, 6000, seen_addr, seen_port), 2)
            .unwrap();
        assert_eq!((src(&back), sport(&back)), (w.x, e2));
        assert_eq!((dst(&back), dport(&back)), (h1, 5000));
    }
    // h2 refuses what it got with an ICMP error: it reaches h1 about the packet h1 sent,
    // whichever worker receives it (RFC 5508 through both halves).
    for at in 0..SHARDS {
        let err = icmp_error(h2, seen_addr, 3, 3, &p);
        let (_, back) = w.deliver(at, Side::Inside, err, 2).unwrap();
        assert_eq!((src(&back), dst(&back)), (w.x, h1), "outer");
        let q = &back[28..];
        assert_eq!(
            (src(q), sport(q), dst(q), dport(q)),
            (h1, 5000, w.x, e2),
            "the quote is what h1 sent"
        );
        assert_checksums(&back);
    }
    // Endpoint independence across shards (RFC 4787 REQ-1): h1's flow to an outside host
    // leaves by the mapping h2 saw, and each host has one mapping in all.
    for at in 0..SHARDS {
        let (_, o) = w
            .deliver(at, Side::Inside, udp(h1, 5000, r, 53), 3)
            .unwrap();
        assert_eq!(
            (src(&o), sport(&o)),
            (seen_addr, seen_port),
            "h1's one mapping"
        );
    }
    let mappings: usize = w.shards.iter().map(|s| s.mappings().len()).sum();
    assert_eq!(mappings, 2, "one mapping per inside endpoint");
    w.check();
}

#[test]
fn icmp_errors_are_steered_by_the_packet_they_quote() {
    let mut w = Workers::new(|_| {});
    let (h1, h2) = w.hosts_on_both_shards();
    let (r, router) = (a("198.51.100.7"), a("198.51.100.1"));
    for h in [h1, h2] {
        let (owner, sent) = w.deliver(0, Side::Inside, udp(h, 4000, r, 53), 0).unwrap();
        for at in 0..SHARDS {
            let err = icmp_error(router, w.x, 3, 3, &sent);
            assert_eq!(w.steer(at, Side::Outside, &err, 1), owner);
            let (_, back) = w.deliver(at, Side::Outside, err, 1).unwrap();
            assert_eq!(dst(&back), h);
            assert_checksums(&back);
        }
        // And an error from the inside host about the reply, to the remote.
        let (_, reply) = w
            .deliver(1, Side::Outside, udp(r, 53, w.x, sport(&sent)), 2)
            .unwrap();
        let err = icmp_error(h, r, 3, 3, &reply);
        assert_eq!(w.steer(1 - owner, Side::Inside, &err, 3), owner);
    }
}

#[test]
fn a_later_fragment_held_on_the_wrong_worker_follows_its_first_fragment() {
    let mut w = Workers::new(|r| r.filtering = Filtering::EndpointIndependent);
    let (h1, h2) = w.hosts_on_both_shards();
    let r = a("198.51.100.7");
    for (ident, h) in [(0x1111u16, h1), (0x2222, h2)] {
        let (owner, out) = w.deliver(0, Side::Inside, udp(h, 4000, r, 53), 0).unwrap();
        let other = 1 - owner;
        let big = big_udp(r, 53, w.x, sport(&out), ident);
        let (first, later) = fragments(&big, 24);
        // The later fragment reaches the worker that does not own the flow first: it
        // cannot be steered without its ports, so that shard holds it.
        assert_eq!(w.steer(other, Side::Outside, &later, 1), other);
        let mut l = later.clone();
        assert_eq!(
            w.shards[other].prerouting(&mut l, Side::Outside, 0, 1),
            Pre::Held
        );
        // The first fragment arrives there too and goes to the owner...
        let (to, f) = w.deliver(other, Side::Outside, first, 2).unwrap();
        assert_eq!((to, dst(&f), dport(&f)), (owner, h, 4000));
        // ...and the held fragment, released, now follows it.
        let released = w.shards[other].released_fragments();
        assert_eq!(released.len(), 1);
        let (to, l) = w
            .deliver(other, Side::Outside, released[0].1.clone(), 3)
            .unwrap();
        assert_eq!((to, dst(&l)), (owner, h));
    }
}

#[test]
fn a_held_syn_is_not_answered_when_another_shard_maps_its_port() {
    let mut w = Workers::new(|_| {});
    let (h1, h2) = w.hosts_on_both_shards();
    let r = a("198.51.100.7");
    // An unsolicited SYN to port 6000 waits on the shard that received it.
    let mut syn = tcp(r, 7000, w.x, 6000, SYN);
    let at = 0;
    assert_eq!(w.steer(at, Side::Outside, &syn, 0), at);
    assert_eq!(
        w.shards[at].prerouting(&mut syn, Side::Outside, 3, 0),
        Pre::Held
    );
    // The inside host (whose home is the other shard) connects out from port 6000.
    let h = if w.shards[0].home(h1, SHARDS) != at {
        h1
    } else {
        h2
    };
    let (owner, out) = w
        .deliver(at, Side::Inside, tcp(h, 6000, r, 7000, SYN), 1000)
        .unwrap();
    assert_ne!(owner, at);
    assert_eq!(sport(&out), 6000, "port preserved");
    assert!(
        w.shards[at].expire(7_000, 64).is_empty(),
        "dropped silently"
    );
}

#[test]
fn a_fragmented_hairpin_datagram_reaches_the_peer_from_the_senders_mapping() {
    let mut w = Workers::new(|_| {});
    let (h1, h2) = w.hosts_on_both_shards();
    let (e2, e1) = (w.mapping_of(h2, 6000), w.mapping_of(h1, 5000));
    for (at, ident) in [(0usize, 0x3333u16), (1, 0x4444)] {
        let big = big_udp(h1, 5000, w.x, e2, ident);
        let (first, later) = fragments(&big, 24);
        let (_, f) = w.deliver(at, Side::Inside, first, 1).unwrap();
        assert_eq!(
            (src(&f), sport(&f), dst(&f), dport(&f)),
            (w.x, e1, h2, 6000),
            "the first fragment, from h1's one mapping"
        );
        let (_, l) = w.deliver(at, Side::Inside, later, 2).unwrap();
        assert_eq!((src(&l), dst(&l)), (w.x, h2), "the later fragment follows");
        assert_eq!(wire::checksum(&l[..20]), 0, "IPv4 header checksum");
        // The UDP checksum covers the whole datagram: verify it reassembled.
        let payload = [&f[20..], &l[20..]].concat();
        assert_eq!(
            wire::checksum4(w.x.into(), h2.into(), 17, &payload),
            0,
            "UDP checksum"
        );
    }
    w.check();
}
