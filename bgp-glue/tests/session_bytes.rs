//! A real session (loopback TCP, `bgp_glue::loopback`) fed crafted and random bytes once
//! Established: every error gets the NOTIFICATION RFC 4271 names, good messages keep it
//! going, and nothing makes the session thread panic or hang. The fuzz target
//! `session_bytes` (bgp-glue/fuzz) drives the same harness with a fuzzer's input.

use std::net::{IpAddr, Ipv4Addr};

use bgp_glue::codec::{self as wire, Announce};
use bgp_glue::loopback::feed_established_session;
use ipnet::IpNet;

fn update() -> Vec<u8> {
    let nets: Vec<IpNet> = vec!["198.18.0.0/24".parse().unwrap()];
    let a = Announce {
        local_as: 65001,
        ebgp: true,
        asn4: true,
        next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    };
    wire::announce(&nets, &a).remove(0)
}

/// `(code, subcode)` of the NOTIFICATION tern sent, `None` if it sent none.
fn answer(input: &[u8]) -> (Option<(u8, u8)>, usize) {
    let out = feed_established_session(input).expect("harness");
    (out.notification.map(|n| (n.code, n.subcode)), out.updates)
}

#[test]
fn good_messages_keep_the_session_going() {
    let mut input = update();
    input.extend(wire::keepalive());
    input.extend(update());
    assert_eq!(answer(&input), (None, 2));
    // Half a message: nothing to complain about, the peer just left.
    let u = update();
    assert_eq!(answer(&u[..u.len() / 2]), (None, 0));
}

#[test]
fn each_error_gets_its_notification() {
    let mut bad_marker = wire::keepalive();
    bad_marker[3] = 0;
    assert_eq!(answer(&bad_marker).0, Some((1, 1)));
    let mut too_long = wire::keepalive();
    too_long[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(answer(&too_long).0, Some((1, 2)));
    let mut bad_type = wire::keepalive();
    bad_type[18] = 9;
    assert_eq!(answer(&bad_type).0, Some((1, 3)));
    // An OPEN once Established: FSM error, subcode 3 (RFC 6608).
    let open = wire::Open {
        version: 4,
        asn: 65001,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        families: vec![],
        asn4: true,
        route_refresh: false,
        graceful_restart: None,
    };
    assert_eq!(answer(&open.encode()).0, Some((5, 3)));
    // Total path attribute length running past the message: malformed attribute list.
    let mut overrun = update();
    let at = wire::HEADER_LEN + 2; // after the (empty) withdrawn routes length
    overrun[at..at + 2].copy_from_slice(&4000u16.to_be_bytes());
    assert_eq!(answer(&overrun).0, Some((3, 1)));
    // Good UPDATEs before the error were taken.
    let mut then_bad = update();
    then_bad.extend(&bad_type);
    assert_eq!(answer(&then_bad), (Some((1, 3)), 1));
}

/// Random bytes, and good messages with random bytes flipped: an answer every time.
#[test]
fn random_bytes_never_break_the_session() {
    let mut rng = ::wire::XorShift64::new(0x9e37_79b9_7f4a_7c15u64);
    let mut next = move || rng.next_u64();
    let mut notified = 0;
    for round in 0..60 {
        let mut input = if round % 2 == 0 {
            (0..(next() % 300))
                .map(|_| next() as u8)
                .collect::<Vec<u8>>()
        } else {
            let mut m = update();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            m
        };
        input.truncate(4096);
        let (n, _) = answer(&input);
        if let Some((code, _)) = n {
            assert!((1..=6).contains(&code), "round {round}: code {code}");
            notified += 1;
        }
    }
    // Most random input is refused with a NOTIFICATION; none may go unanswered by a hang.
    assert!(notified > 0);
}
