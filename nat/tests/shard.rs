//! The NAT shard against hand-built packets and a controllable clock: the cases of
//! RFC 4787, 5382, 5508 and 7857 that do not need real hosts (timers above all).

mod packets;

use std::sync::Arc;

use nat::flow::{ACK, FIN, RST, SYN};
use nat::rules::{Endpoint, Filtering, Frontend, Rules};
use nat::{Class, PortMap, Post, Pre, Reason, Shard, Side};
use packets::*;

const X: &str = "203.0.113.1";
const S: u64 = 1000;

struct Nat {
    shard: Shard,
    x: u32,
}

impl Nat {
    fn new(f: impl FnOnce(&mut Rules)) -> Nat {
        let mut rules = Rules::new(42);
        rules.capacity = 1024;
        f(&mut rules);
        let mut ext = rules.pool.clone();
        ext.push(a(X));
        let ports = Arc::new(PortMap::new(ext));
        for fe in &rules.frontends {
            ports.reserve(
                fe.external.addr,
                nat::ports::Space::of(fe.proto),
                fe.external.port,
            );
        }
        Nat {
            shard: Shard::new(0, Arc::new(rules), ports),
            x: a(X),
        }
    }

    /// Inside → outside: pre-routing, then post-routing with SNAT. A packet to another
    /// inside host's mapping goes round (`Pre::Recirculate`): pre-routing again as from
    /// the outside, then post-routing without SNAT.
    fn out(&mut self, mut p: Vec<u8>, now: u64) -> Result<Vec<u8>, String> {
        let pre = self.shard.prerouting(&mut p, Side::Inside, 0, now);
        if let Pre::Recirculate { .. } = pre {
            return self.inbound(p, now);
        }
        let h = match pre {
            Pre::Pass => None,
            Pre::Session(h) => Some(h),
            other => return Err(format!("{other:?}")),
        };
        match self.shard.postrouting(&mut p, h, Some(self.x), now) {
            Post::Pass | Post::Translated => Ok(p),
            other => Err(format!("{other:?}")),
        }
    }

    /// Outside → inside: pre-routing, then post-routing without SNAT.
    fn inbound(&mut self, mut p: Vec<u8>, now: u64) -> Result<Vec<u8>, String> {
        let pre = self.shard.prerouting(&mut p, Side::Outside, 1, now);
        let h = match pre {
            Pre::Pass => None,
            Pre::Session(h) => Some(h),
            other => return Err(format!("{other:?}")),
        };
        match self.shard.postrouting(&mut p, h, None, now) {
            Post::Pass | Post::Translated => Ok(p),
            other => Err(format!("{other:?}")),
        }
    }

    fn check(&self) {
        self.shard.check().unwrap();
    }
}

#[test]
fn udp_snat_preserves_port_and_translates_the_reply() {
    let mut n = Nat::new(|_| {});
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    let o = n.out(udp(h, 40000, r, 53), 0).unwrap();
    assert_eq!(
        (src(&o), sport(&o), dst(&o), dport(&o)),
        (n.x, 40000, r, 53)
    );
    assert_checksums(&o);
    let back = n.inbound(udp(r, 53, n.x, 40000), S).unwrap();
    assert_eq!(
        (src(&back), sport(&back), dst(&back), dport(&back)),
        (r, 53, h, 40000)
    );
    assert_checksums(&back);
    n.check();
}

#[test]
fn mapping_is_endpoint_independent_also_under_port_collision() {
    let mut n = Nat::new(|_| {});
    let (h1, h2) = (a("192.0.2.10"), a("192.0.2.11"));
    let (r1, r2) = (a("198.51.100.7"), a("198.51.100.8"));
    let p1 = sport(&n.out(udp(h1, 5000, r1, 3478), 0).unwrap());
    // The second host wants the same source port: it gets another one, of the same class.
    let p2 = sport(&n.out(udp(h2, 5000, r1, 3478), 0).unwrap());
    assert_eq!(p1, 5000);
    assert_ne!(p2, 5000, "no port overloading");
    assert!(p2 >= 1024);
    // Each keeps its mapping towards any destination (REQ-1).
    assert_eq!(sport(&n.out(udp(h1, 5000, r2, 9), 0).unwrap()), p1);
    assert_eq!(sport(&n.out(udp(h2, 5000, r2, 9), 0).unwrap()), p2);
    n.check();
}

/// A taken port is replaced by a keyed-hash choice (RFC 6056 §3.3.3): distinct ports of
/// the same class, and another set of them under another process secret, so an outside
/// observer cannot predict them.
#[test]
fn replacement_ports_depend_on_the_secret_seed() {
    let chosen = |seed: u64| -> Vec<u16> {
        let mut n = Nat::new(|r| r.seed = seed);
        let r = a("198.51.100.7");
        let ports: Vec<u16> = (0..20)
            .map(|i| sport(&n.out(udp(a("192.0.2.10") + i, 5000, r, 53), 0).unwrap()))
            .collect();
        n.check();
        ports
    };
    let (one, two) = (chosen(1), chosen(2));
    for ports in [&one, &two] {
        assert_eq!(ports[0], 5000, "the first host keeps its port");
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "no port overloading: {ports:?}"
        );
        assert!(ports.iter().all(|&p| p >= 1024), "{ports:?}");
    }
    let same = one[1..]
        .iter()
        .zip(&two[1..])
        .filter(|(x, y)| x == y)
        .count();
    assert!(same < 3, "seed 1 {one:?} and seed 2 {two:?}");
}

#[test]
fn port_class_is_kept() {
    let mut n = Nat::new(|_| {});
    let r = a("198.51.100.7");
    assert_eq!(
        sport(&n.out(udp(a("192.0.2.10"), 500, r, 53), 0).unwrap()),
        500
    );
    let p = sport(&n.out(udp(a("192.0.2.11"), 500, r, 53), 0).unwrap());
    assert!((1..1024).contains(&p) && p != 500, "{p}");
}

#[test]
fn filtering_modes() {
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    let other = a("198.51.100.99");
    for (mode, same_addr_other_port, other_addr) in [
        (Filtering::EndpointIndependent, true, true),
        (Filtering::AddressDependent, true, false),
        (Filtering::AddressAndPortDependent, false, false),
    ] {
        let mut n = Nat::new(|r| r.filtering = mode);
        n.out(udp(h, 4000, r, 3478), 0).unwrap();
        assert_eq!(
            n.inbound(udp(r, 3479, n.x, 4000), 0).is_ok(),
            same_addr_other_port,
            "{mode:?}"
        );
        let res = n.inbound(udp(other, 3478, n.x, 4000), 0);
        assert_eq!(res.is_ok(), other_addr, "{mode:?}");
        if !other_addr {
            assert_eq!(
                res.unwrap_err(),
                format!("{:?}", Pre::Drop(Reason::Filtered))
            );
        }
        n.check();
    }
}

#[test]
fn udp_mapping_lives_five_minutes_and_outbound_refreshes_it() {
    let mut n = Nat::new(|_| {});
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 4000, r, 53), 0).unwrap();
    // 299 s later the reply still passes; an outbound packet at 250 s refreshed it.
    n.out(udp(h, 4000, r, 53), 250 * S).unwrap();
    assert!(n.inbound(udp(r, 53, n.x, 4000), 549 * S).is_ok());
    // 300 s of silence: gone, reclaimed by expire with bounded work.
    assert_eq!(n.shard.sessions().len(), 1);
    n.shard.expire(849 * S, 64);
    assert_eq!(n.shard.sessions().len(), 0);
    assert_eq!(n.shard.mappings().len(), 0);
    // Nothing translates it any more: it stays addressed to tern.
    assert_eq!(
        dst(&n.inbound(udp(r, 53, n.x, 4000), 850 * S).unwrap()),
        n.x
    );
    n.check();
}

#[test]
fn expired_session_met_by_a_lookup_is_reclaimed() {
    let mut n = Nat::new(|_| {});
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 4000, r, 53), 0).unwrap();
    assert_eq!(
        dst(&n.inbound(udp(r, 53, n.x, 4000), 301 * S).unwrap()),
        n.x
    );
    assert_eq!(n.shard.sessions().len(), 0);
    assert_eq!(n.shard.stats.expired, 1);
}

#[test]
fn freed_port_is_held_down_for_120_s() {
    let mut n = Nat::new(|_| {});
    let r = a("198.51.100.7");
    n.out(udp(a("192.0.2.10"), 4000, r, 53), 0).unwrap();
    // The remote answered: it knows the port, which must not go to another host at once.
    n.inbound(udp(r, 53, n.x, 4000), 1).unwrap();
    n.shard.expire(302 * S, 64);
    assert_eq!(n.shard.mappings().len(), 0);
    // Another host asking for 4000 within the hold-down gets a different port…
    assert_ne!(
        sport(&n.out(udp(a("192.0.2.11"), 4000, r, 53), 303 * S).unwrap()),
        4000
    );
    // …and after it, 4000 is free again.
    assert_eq!(
        sport(&n.out(udp(a("192.0.2.12"), 4000, r, 53), 423 * S).unwrap()),
        4000
    );
}

/// A port nobody outside answered on (a scan, a SYN flood) is reused at once: a flood of
/// unanswered flows cannot park every external port in hold-down.
#[test]
fn a_port_never_answered_is_free_again_at_once() {
    let mut n = Nat::new(|_| {});
    let r = a("198.51.100.7");
    n.out(tcp(a("192.0.2.10"), 4000, r, 80, SYN), 0).unwrap();
    // A reset refuses the flow; it does not make the port known.
    n.inbound(tcp(r, 80, n.x, 4000, RST | ACK), 1).unwrap();
    n.shard.expire(300 * S, 64);
    assert_eq!(n.shard.mappings().len(), 0);
    assert_eq!(
        sport(
            &n.out(tcp(a("192.0.2.11"), 4000, r, 80, SYN), 301 * S)
                .unwrap()
        ),
        4000
    );
}

/// With the default quota one inside host gets at most 4096 external ports; the others
/// still get theirs (RFC 6888 REQ-4).
#[test]
fn the_default_port_quota_leaves_ports_to_other_hosts() {
    let mut n = Nat::new(|r| r.capacity = 8192);
    let r = a("198.51.100.7");
    let flooder = a("192.0.2.10");
    let mut refused = 0;
    for port in 0..5000u16 {
        match n.out(tcp(flooder, 10_000 + port, r, 80, SYN), 0) {
            Ok(_) => {}
            Err(e) => {
                assert!(e.contains("PortQuota"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5000 - nat::rules::DEFAULT_PORTS_PER_HOST);
    assert!(n.out(tcp(a("192.0.2.11"), 4000, r, 80, SYN), 0).is_ok());
}

#[test]
fn tcp_timeouts_follow_the_state() {
    let mut n = Nat::new(|_| {});
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(tcp(h, 5555, r, 80, SYN), 0).unwrap();
    assert_eq!(n.shard.sessions().count(Class::TcpTransitory), 1);
    n.inbound(tcp(r, 80, n.x, 5555, SYN | ACK), S).unwrap();
    n.out(tcp(h, 5555, r, 80, ACK), S).unwrap();
    assert_eq!(n.shard.sessions().count(Class::TcpEstablished), 1);
    // Established: 2 h 4 min idle is fine.
    assert!(n.inbound(tcp(r, 80, n.x, 5555, ACK), 7_000 * S).is_ok());
    // An RST keeps the session 4 minutes (RFC 7857 §2.2)…
    n.inbound(tcp(r, 80, n.x, 5555, RST), 7_001 * S).unwrap();
    assert_eq!(n.shard.sessions().count(Class::TcpTransitory), 1);
    assert!(n.out(tcp(h, 5555, r, 80, ACK), 7_100 * S).is_ok());
    // …and traffic after it restores the established state.
    assert_eq!(n.shard.sessions().count(Class::TcpEstablished), 1);
    n.out(tcp(h, 5555, r, 80, FIN | ACK), 7_200 * S).unwrap();
    n.inbound(tcp(r, 80, n.x, 5555, FIN | ACK), 7_200 * S)
        .unwrap();
    assert_eq!(n.shard.sessions().count(Class::TcpTransitory), 1);
    n.shard.expire(7_439 * S, 64);
    assert_eq!(n.shard.sessions().len(), 1);
    n.shard.expire(7_440 * S, 64);
    assert_eq!(n.shard.sessions().len(), 0);
    n.check();
}

#[test]
fn simultaneous_open_through_the_nat() {
    let mut n = Nat::new(|r| r.filtering = Filtering::AddressAndPortDependent);
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(tcp(h, 6000, r, 7000, SYN), 0).unwrap();
    let back = n.inbound(tcp(r, 7000, n.x, 6000, SYN), 10).unwrap();
    assert_eq!((dst(&back), dport(&back)), (h, 6000));
    assert_eq!(n.shard.sessions().count(Class::TcpEstablished), 1);
}

#[test]
fn unsolicited_syn_is_held_six_seconds_then_answered() {
    let mut n = Nat::new(|_| {});
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    // An inbound SYN to the external address with no mapping at all.
    let mut syn = tcp(r, 7000, n.x, 6000, SYN);
    assert_eq!(n.shard.prerouting(&mut syn, Side::Outside, 3, 0), Pre::Held);
    assert!(n.shard.expire(5_999, 64).is_empty());
    let due = n.shard.expire(6_000, 64);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, 3, "the tag comes back");
    assert_eq!(&due[0].1[..20], &tcp(r, 7000, n.x, 6000, SYN)[..20]);

    // Held again; this time the inside host's outbound SYN comes within the 6 s.
    let mut syn = tcp(r, 7000, n.x, 6000, SYN);
    assert_eq!(
        n.shard.prerouting(&mut syn, Side::Outside, 3, 10_000),
        Pre::Held
    );
    n.out(tcp(h, 6000, r, 7000, SYN), 12_000).unwrap();
    assert!(n.shard.expire(20_000, 64).is_empty(), "silently dropped");
}

#[test]
fn echo_ids_of_two_hosts_are_mapped_apart() {
    let mut n = Nat::new(|_| {});
    let (h1, h2, r) = (a("192.0.2.10"), a("192.0.2.11"), a("198.51.100.7"));
    let o1 = n.out(echo(h1, r, 77, true), 0).unwrap();
    let o2 = n.out(echo(h2, r, 77, true), 0).unwrap();
    assert_checksums(&o1);
    assert_checksums(&o2);
    let (i1, i2) = (echo_id(&o1), echo_id(&o2));
    assert_ne!(i1, i2);
    let b2 = n.inbound(echo(r, n.x, i2, false), 5).unwrap();
    let b1 = n.inbound(echo(r, n.x, i1, false), 5).unwrap();
    assert_eq!((dst(&b1), echo_id(&b1)), (h1, 77));
    assert_eq!((dst(&b2), echo_id(&b2)), (h2, 77));
    assert_checksums(&b1);
    // An echo request to the external address is tern's to answer, not the NAT's.
    let mut ping = echo(r, n.x, i1, true);
    assert_eq!(
        n.shard.prerouting(&mut ping, Side::Outside, 0, 5),
        Pre::Pass
    );
    // ICMP query sessions time out after 60 s.
    n.shard.expire(60_005, 64);
    assert_eq!(n.shard.sessions().len(), 0);
}

#[test]
fn icmp_errors_are_translated_and_never_refresh() {
    let mut n = Nat::new(|_| {});
    let (h, r, router) = (a("192.0.2.10"), a("198.51.100.7"), a("198.51.100.1"));
    let sent = n.out(udp(h, 4000, r, 53), 0).unwrap();
    // A router on the way says the port is unreachable, quoting what it got.
    let err = icmp_error(router, n.x, 3, 3, &sent);
    let back = n.inbound(err, 100 * S).unwrap();
    assert_eq!((src(&back), dst(&back)), (router, h));
    assert_checksums(&back);
    let q = &back[28..];
    assert_eq!(
        (src(q), sport(q), dst(q), dport(q)),
        (h, 4000, r, 53),
        "quote restored"
    );
    // The error did not refresh the session: it still expires 300 s after the packet.
    n.shard.expire(300 * S, 64);
    assert_eq!(n.shard.sessions().len(), 0);

    // A bad checksum, and an error about nothing we know, are dropped / passed.
    let sent = n.out(udp(h, 4001, r, 53), 400 * S).unwrap();
    let mut bad = icmp_error(router, n.x, 3, 3, &sent);
    bad[23] ^= 0xff;
    assert_eq!(
        n.inbound(bad, 400 * S).unwrap_err(),
        format!("{:?}", Pre::Drop(Reason::IcmpBadChecksum))
    );
    let unknown = icmp_error(router, n.x, 3, 3, &udp(n.x, 9999, r, 53));
    let mut unknown2 = unknown.clone();
    assert_eq!(
        n.shard.prerouting(&mut unknown2, Side::Outside, 0, 400 * S),
        Pre::Pass
    );
    assert_eq!(unknown2, unknown, "untouched");
}

#[test]
fn icmp_error_from_inside_host_leaves_with_the_external_address() {
    let mut n = Nat::new(|r| r.filtering = Filtering::EndpointIndependent);
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 4000, r, 53), 0).unwrap();
    let arrived = n.inbound(udp(r, 53, n.x, 4000), 1).unwrap();
    let err = n.out(icmp_error(h, r, 3, 3, &arrived), 2).unwrap();
    assert_eq!((src(&err), dst(&err)), (n.x, r));
    let q = &err[28..];
    assert_eq!((src(q), sport(q), dst(q), dport(q)), (r, 53, n.x, 4000));
    assert_checksums(&err);
}

#[test]
fn hairpin_uses_the_external_endpoints() {
    let mut n = Nat::new(|_| {});
    let (h1, h2, r) = (a("192.0.2.10"), a("192.0.2.11"), a("198.51.100.7"));
    n.out(udp(h2, 6000, r, 3478), 0).unwrap();
    // h1 sends to h2's external endpoint.
    let p = n.out(udp(h1, 5000, n.x, 6000), 1).unwrap();
    assert_eq!(
        (src(&p), sport(&p), dst(&p), dport(&p)),
        (n.x, 5000, h2, 6000)
    );
    assert_checksums(&p);
    // h2 answers to what it saw.
    let back = n.out(udp(h2, 6000, n.x, 5000), 2).unwrap();
    assert_eq!(
        (src(&back), sport(&back), dst(&back), dport(&back)),
        (n.x, 6000, h1, 5000)
    );
    n.check();
}

#[test]
fn dnat_port_forward_and_balancer() {
    let web = Endpoint {
        addr: a(X),
        port: 8080,
    };
    let be = |i: u32| Endpoint {
        addr: a("192.0.2.100") + i,
        port: 80,
    };
    let lb = Endpoint {
        addr: a(X),
        port: 443,
    };
    let mut n = Nat::new(|r| {
        r.add_frontend(Frontend::new("web".into(), 6, web, vec![be(0)]))
            .unwrap();
        r.add_frontend(Frontend::new("lb".into(), 6, lb, (0..4).map(be).collect()))
            .unwrap();
    });
    let c = a("198.51.100.20");
    let p = n.inbound(tcp(c, 33000, n.x, 8080, SYN), 0).unwrap();
    assert_eq!((dst(&p), dport(&p)), (be(0).addr, 80));
    assert_checksums(&p);
    let reply = n.out(tcp(be(0).addr, 80, c, 33000, SYN | ACK), 1).unwrap();
    assert_eq!((src(&reply), sport(&reply), dst(&reply)), (n.x, 8080, c));
    assert_checksums(&reply);

    // 1000 clients over the balancer land on all four backends, and keep their backend.
    let mut chosen = std::collections::HashMap::new();
    for i in 0..1000u32 {
        let p = n.inbound(tcp(c + i, 40000, n.x, 443, SYN), 2).unwrap();
        chosen.insert(i, dst(&p));
    }
    let mut per = std::collections::HashMap::new();
    for d in chosen.values() {
        *per.entry(*d).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 4);
    assert!(per.values().all(|&k| k > 150), "{per:?}");
    for i in 0..1000u32 {
        let p = n.inbound(tcp(c + i, 40000, n.x, 443, ACK), 3).unwrap();
        assert_eq!(dst(&p), chosen[&i]);
    }
    n.check();
}

#[test]
fn balancer_backend_down_moves_about_a_quarter_of_new_flows() {
    let be = |i: u32| Endpoint {
        addr: a("192.0.2.100") + i,
        port: 80,
    };
    let lb = Endpoint {
        addr: a(X),
        port: 443,
    };
    let mut rules = Rules::new(7);
    rules
        .add_frontend(Frontend::new("lb".into(), 6, lb, (0..4).map(be).collect()))
        .unwrap();
    let flows: Vec<nat::Flow> = (0..4000u32)
        .map(|i| nat::Flow {
            proto: 6,
            src: a("198.51.100.0") + i,
            dst: lb.addr,
            sport: 1024 + i as u16,
            dport: 443,
        })
        .collect();
    let before: Vec<_> = flows
        .iter()
        .map(|f| rules.frontend(f).unwrap().pick(rules.flow_hash(f)))
        .collect();
    rules.frontend_mut("lb").unwrap().set_up(2, false);
    let after: Vec<_> = flows
        .iter()
        .map(|f| rules.frontend(f).unwrap().pick(rules.flow_hash(f)))
        .collect();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(after.iter().all(|b| *b != Some(be(2))));
    // About 1/4 of flows were on the downed backend; almost nothing else moves.
    assert!((800..1250).contains(&moved), "{moved} of 4000 moved");
}

#[test]
fn out_of_order_fragments_are_translated() {
    let mut n = Nat::new(|r| r.filtering = Filtering::EndpointIndependent);
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 4000, r, 53), 0).unwrap();
    let big = big_udp(r, 53, n.x, 4000, 0);
    let (first, later) = fragments(&big, 24);
    // The later fragment first: held.
    let mut l = later.clone();
    assert_eq!(n.shard.prerouting(&mut l, Side::Outside, 9, 1), Pre::Held);
    let f = n.inbound(first, 2).unwrap();
    assert_eq!((dst(&f), dport(&f)), (h, 4000));
    let released = n.shard.released_fragments();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0, 9);
    let l = n.inbound(released[0].1.clone(), 3).unwrap();
    assert_eq!(dst(&l), h);
    assert_eq!(wire::checksum(&l[..20]), 0);
    // The UDP checksum over the reassembled datagram verifies.
    let mut whole = f[..20].to_vec();
    whole.extend_from_slice(&f[20..]);
    whole.extend_from_slice(&l[20..]);
    assert_eq!(wire::checksum4(r.into(), h.into(), 17, &whole[20..]), 0);
}

#[test]
fn overlapping_and_tiny_fragments_are_dropped() {
    let mut n = Nat::new(|r| r.filtering = Filtering::EndpointIndependent);
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 4000, r, 53), 0).unwrap();
    let mut big = udp(r, 53, n.x, 4000);
    big.extend_from_slice(&[0x55; 64]);
    let total = big.len() as u16;
    big[2..4].copy_from_slice(&total.to_be_bytes());
    wire::ipv4::fill_checksum(&mut big);
    let (first, later) = fragments(&big, 24);
    n.inbound(first, 1).unwrap();
    let mut overlap = later.clone();
    overlap[6..8].copy_from_slice(&1u16.to_be_bytes()); // offset 8: inside the first
    wire::ipv4::fill_checksum(&mut overlap);
    assert_eq!(
        n.shard.prerouting(&mut overlap, Side::Outside, 0, 2),
        Pre::Drop(Reason::FragmentOverlap)
    );

    // A first fragment of TCP with 8 bytes of header: too short (RFC 1858).
    let syn = tcp(h, 5000, r, 80, SYN);
    let (tiny, _) = fragments(&syn, 8);
    let mut tiny = tiny;
    assert_eq!(
        n.shard.prerouting(&mut tiny, Side::Inside, 0, 3),
        Pre::Drop(Reason::Truncated)
    );
}

#[test]
fn full_table_early_drops_transitory_and_refuses_when_all_established() {
    let mut n = Nat::new(|r| r.capacity = 4);
    let r = a("198.51.100.7");
    let h = a("192.0.2.10");
    // Four established TCP sessions fill the table.
    for i in 0..4u16 {
        n.out(tcp(h, 1000 + i, r, 80, SYN), 0).unwrap();
        n.inbound(tcp(r, 80, n.x, 1000 + i, SYN | ACK), 0).unwrap();
    }
    assert_eq!(
        n.out(udp(h, 9, r, 53), 1).unwrap_err(),
        format!("{:?}", Post::Refuse(Reason::TableFull))
    );
    // One goes transitory (both FINs): the next new flow takes its place.
    n.out(tcp(h, 1000, r, 80, FIN | ACK), 2).unwrap();
    n.inbound(tcp(r, 80, n.x, 1000, FIN | ACK), 2).unwrap();
    assert!(n.out(udp(h, 9, r, 53), 3).is_ok());
    assert_eq!(n.shard.stats.early_dropped, 1);
    assert_eq!(n.shard.sessions().count(Class::TcpEstablished), 3);
    n.check();
}

#[test]
fn per_host_quotas() {
    let mut n = Nat::new(|r| {
        r.max_sessions_per_host = 3;
        r.max_ports_per_host = 2;
    });
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    n.out(udp(h, 1, r, 53), 0).unwrap();
    n.out(udp(h, 2, r, 53), 0).unwrap();
    assert_eq!(
        n.out(udp(h, 3, r, 53), 0).unwrap_err(),
        format!("{:?}", Post::Refuse(Reason::PortQuota))
    );
    n.out(udp(h, 1, r, 54), 0).unwrap();
    assert_eq!(
        n.out(udp(h, 2, r, 54), 0).unwrap_err(),
        format!("{:?}", Post::Refuse(Reason::SessionQuota))
    );
    // Another host is not limited by the first one's quota.
    n.out(udp(a("192.0.2.11"), 3, r, 53), 0).unwrap();
    n.check();
}

#[test]
fn pool_pairs_each_host_with_one_address() {
    let pool: Vec<u32> = (0..4).map(|i| a("203.0.113.10") + i).collect();
    let mut n = Nat::new(|r| r.pool = pool.clone());
    let r = a("198.51.100.7");
    for host in 0..20u32 {
        let h = a("192.0.2.10") + host;
        let first = src(&n.out(udp(h, 1000, r, 53), 0).unwrap());
        assert!(pool.contains(&first));
        for port in 1..5u16 {
            assert_eq!(
                src(&n.out(tcp(h, 2000 + port, r, 80, SYN), 0).unwrap()),
                first
            );
        }
    }
    // Inbound to a pool address with no mapping: dropped, not routed.
    let mut p = udp(r, 53, pool[0], 4444);
    assert_eq!(
        n.shard.prerouting(&mut p, Side::Outside, 0, 1),
        Pre::Drop(Reason::NoMapping)
    );
}

#[test]
fn random_traffic_keeps_the_invariants() {
    let mut n = Nat::new(|r| {
        r.capacity = 256;
        r.filtering = Filtering::EndpointIndependent;
    });
    let mut rng = wire::XorShift64::new(0x1234_5678_9abc_def0u64);
    let mut rnd = move || rng.next_u64();
    for step in 0..20_000u64 {
        let now = step * 50;
        let r = rnd();
        let h = a("192.0.2.10") + (r % 8) as u32;
        let remote = a("198.51.100.1") + ((r >> 8) % 4) as u32;
        let port = 1000 + ((r >> 16) % 64) as u16;
        let flags = [SYN, SYN | ACK, ACK, FIN | ACK, RST][((r >> 24) % 5) as usize];
        let p = match (r >> 32) % 6 {
            0 => udp(h, port, remote, 53),
            1 => tcp(h, port, remote, 80, flags),
            2 => echo(h, remote, port, true),
            3 => udp(remote, 53, n.x, port),
            4 => tcp(remote, 80, n.x, port, flags),
            _ => echo(remote, n.x, port, false),
        };
        if (r >> 32) % 6 < 3 {
            let _ = n.out(p, now);
        } else {
            let _ = n.inbound(p, now);
        }
        if step % 97 == 0 {
            n.shard.expire(now, 16);
            n.check();
        }
    }
    n.check();
    assert!(n.shard.stats.created > 100);
}

#[test]
fn arbitrary_bytes_never_panic_and_keep_the_invariants() {
    let mut n = Nat::new(|r| {
        r.capacity = 64;
        r.filtering = Filtering::EndpointIndependent;
        let fe = Endpoint {
            addr: a(X),
            port: 53,
        };
        let be = vec![Endpoint {
            addr: a("192.0.2.50"),
            port: 53,
        }];
        r.add_frontend(Frontend::new("dns".into(), 17, fe, be))
            .unwrap();
    });
    let (h, r) = (a("192.0.2.10"), a("198.51.100.7"));
    let sent = n.out(udp(h, 4000, r, 53), 0).unwrap();
    let templates = [
        udp(h, 4000, r, 53),
        tcp(h, 5000, r, 80, SYN),
        echo(h, r, 9, true),
        udp(r, 53, n.x, 4000),
        udp(r, 1234, n.x, 53),
        tcp(r, 80, n.x, 5000, SYN | ACK),
        icmp_error(r, n.x, 3, 3, &sent),
        fragments(&udp(r, 53, n.x, 4000), 8).0,
        fragments(&udp(r, 53, n.x, 4000), 8).1,
    ];
    let mut rng = wire::XorShift64::new(0x0123_4567_89ab_cdefu64);
    let mut rnd = move || rng.next_u64();
    for step in 0..200_000u64 {
        let mut p = templates[(rnd() % templates.len() as u64) as usize].clone();
        for _ in 0..rnd() % 4 {
            let at = (rnd() as usize) % p.len();
            p[at] = rnd() as u8;
        }
        // The dataplane hands over only packets whose IPv4 header it validated.
        let ihl = ((p[0] & 0x0f) as usize) * 4;
        if p[0] >> 4 != 4
            || ihl < 20
            || ihl > p.len()
            || wire::ipv4::total_len(&p) < ihl
            || wire::ipv4::total_len(&p) > p.len()
        {
            continue;
        }
        wire::ipv4::fill_checksum(&mut p);
        let side = if rnd() % 2 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        let now = step * 7;
        let h = match n.shard.prerouting(&mut p, side, 0, now) {
            Pre::Session(h) => Some(h),
            Pre::Pass => None,
            _ => continue,
        };
        let snat = (side == Side::Inside).then_some(n.x);
        let _ = n.shard.postrouting(&mut p, h, snat, now);
        if step % 1024 == 0 {
            n.shard.expire(now, 32);
            let _ = n.shard.released_fragments();
            n.check();
        }
    }
    n.check();
}
