//! The BGP codec: what tern encodes is read back by an independent decoder
//! (`netgauze-bgp-pkt`) and by tern's own; malformed input gets the RFC 4271 / RFC 7606
//! outcome; random bytes never panic the decoder.

use std::net::{IpAddr, Ipv4Addr};

use bgp_glue::codec::{self as wire, Announce, Context, Family, Open, Update};
use ipnet::IpNet;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

fn netgauze(bytes: &[u8]) -> BgpMessage {
    BgpMessage::parse(
        &mut SliceReader::new(bytes),
        &mut BgpParsingContext::default(),
    )
    .unwrap_or_else(|e| panic!("netgauze refused {bytes:02x?}: {e:?}"))
}

/// Splits a whole message into its type and body, checking the header.
fn body(message: &[u8]) -> (u8, &[u8]) {
    let mut h = [0u8; wire::HEADER_LEN];
    h.copy_from_slice(&message[..wire::HEADER_LEN]);
    let (kind, len) = wire::check_header(&h).expect("header");
    assert_eq!(len, message.len());
    (kind, &message[wire::HEADER_LEN..])
}

const EBGP4: Context = Context {
    asn4: true,
    ebgp: true,
};

#[test]
fn open_is_read_back_by_netgauze_and_by_us() {
    let open = Open {
        version: 4,
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        families: vec![Family::Ipv4, Family::Ipv6],
        asn4: true,
        route_refresh: true,
        graceful_restart: Some(Default::default()),
    };
    let bytes = open.encode();
    let BgpMessage::Open(o) = netgauze(&bytes) else {
        panic!("not an OPEN")
    };
    assert_eq!(o.my_as(), wire::AS_TRANS);
    assert_eq!(o.my_asn4(), 4_200_000_001);
    assert_eq!(o.hold_time(), 90);
    assert_eq!(o.bgp_id(), Ipv4Addr::new(192, 0, 2, 1));
    let (kind, b) = body(&bytes);
    assert_eq!(kind, wire::OPEN);
    assert_eq!(Open::decode(b).expect("our decode"), open);
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

#[test]
fn announcements_and_withdrawals_are_read_back() {
    let v4 = nets(&[
        "198.18.0.0/15",
        "198.18.100.0/24",
        "203.0.113.128/25",
        "0.0.0.0/0",
    ]);
    let a = Announce {
        local_as: 65000,
        ebgp: true,
        asn4: true,
        next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    };
    let m = wire::announce(&v4, &a);
    assert_eq!(m.len(), 1);
    let BgpMessage::Update(u) = netgauze(&m[0]) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.nlri().len(), v4.len());
    let ours = Update::decode(body(&m[0]).1, EBGP4).expect("decode");
    assert_eq!(ours.announced, v4);
    assert_eq!(ours.attributes.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(ours.attributes.as_path_string(), "65000");
    assert!(ours.treat_as_withdraw.is_none());

    let v6 = nets(&["2001:db8::/32", "2001:db8:100::/48", "2001:db8:1:2::/64"]);
    let a6 = Announce {
        next_hop: "2001:db8:a::1".parse().expect("addr"),
        ..a.clone()
    };
    let m = wire::announce(&v6, &a6);
    netgauze(&m[0]);
    let ours = Update::decode(body(&m[0]).1, EBGP4).expect("decode");
    assert_eq!(ours.announced, v6);
    assert_eq!(ours.attributes.mp_next_hop, Some(a6.next_hop));

    // Big announcements split below the 4096-byte limit.
    let many: Vec<IpNet> = (0..3000u32)
        .map(|i| {
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0xc612_0000 | (i << 8)), 24).expect("net"))
        })
        .collect();
    let m = wire::announce(&many, &a);
    assert!(m.len() > 1);
    let mut back = Vec::new();
    for msg in &m {
        assert!(msg.len() <= wire::MAX_LEN);
        netgauze(msg);
        back.extend(
            Update::decode(body(msg).1, EBGP4)
                .expect("decode")
                .announced,
        );
    }
    assert_eq!(back, many);

    for (list, family) in [(&v4, Family::Ipv4), (&v6, Family::Ipv6)] {
        let w = wire::withdraw(list);
        netgauze(&w[0]);
        let ours = Update::decode(body(&w[0]).1, EBGP4).expect("decode");
        assert_eq!(&ours.withdrawn, list);
        assert!(ours.announced.is_empty());
        let eor = wire::end_of_rib(family);
        netgauze(&eor);
        let ours = Update::decode(body(&eor).1, EBGP4).expect("decode");
        assert_eq!(ours.end_of_rib, Some(family));
    }
}

/// An UPDATE body from its parts.
fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]; // 65001
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 2];
const NLRI: [u8; 4] = [24, 198, 18, 5];

fn attrs(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn rfc7606_outcomes() {
    let decode = |b: Vec<u8>| Update::decode(&b, EBGP4);
    // Well formed.
    let ok = decode(update(&[], &attrs(&[&ORIGIN, &AS_PATH, &NEXT_HOP]), &NLRI)).expect("ok");
    assert_eq!(ok.announced, nets(&["198.18.5.0/24"]));
    assert!(ok.treat_as_withdraw.is_none());

    // ORIGIN 5: treat-as-withdraw (the prefix becomes a withdrawal).
    let bad_origin = decode(update(
        &[],
        &attrs(&[&[0x40, 1, 1, 5], &AS_PATH, &NEXT_HOP]),
        &NLRI,
    ))
    .expect("contained");
    assert!(bad_origin.treat_as_withdraw.is_some());
    assert!(bad_origin.announced.is_empty());
    assert_eq!(bad_origin.withdrawn, nets(&["198.18.5.0/24"]));

    // Missing NEXT_HOP: treat-as-withdraw.
    let missing = decode(update(&[], &attrs(&[&ORIGIN, &AS_PATH]), &NLRI)).expect("contained");
    assert_eq!(
        missing.treat_as_withdraw.as_deref(),
        Some("missing NEXT_HOP")
    );

    // AS_PATH segment with zero ASes: treat-as-withdraw.
    let zero = decode(update(
        &[],
        &attrs(&[&ORIGIN, &[0x40, 2, 2, 2, 0], &NEXT_HOP]),
        &NLRI,
    ))
    .expect("contained");
    assert!(zero.treat_as_withdraw.is_some());

    // LOCAL_PREF from an external peer and a malformed AGGREGATOR: attribute-discard.
    let discard = decode(update(
        &[],
        &attrs(&[
            &ORIGIN,
            &AS_PATH,
            &NEXT_HOP,
            &[0x40, 5, 4, 0, 0, 0, 200],
            &[0xc0, 7, 3, 1, 2, 3],
        ]),
        &NLRI,
    ))
    .expect("contained");
    assert!(discard.treat_as_withdraw.is_none());
    assert_eq!(discard.discarded, vec![5, 7]);
    assert_eq!(discard.attributes.local_pref, None);
    assert_eq!(discard.announced.len(), 1);

    // A repeated attribute: the first one counts, the repeat is discarded.
    let dup = decode(update(
        &[],
        &attrs(&[
            &ORIGIN,
            &AS_PATH,
            &NEXT_HOP,
            &[0x80, 4, 4, 0, 0, 0, 1],
            &[0x80, 4, 4, 0, 0, 0, 2],
        ]),
        &NLRI,
    ))
    .expect("contained");
    assert_eq!(dup.attributes.med, Some(1));
    assert_eq!(dup.discarded, vec![4]);

    // Session-ending errors carry the right NOTIFICATION.
    let code = |r: Result<Update, wire::Notification>| {
        r.map(|_| (0, 0)).unwrap_or_else(|n| (n.code, n.subcode))
    };
    // An attribute length running past the list: malformed attribute list (3/1).
    assert_eq!(code(decode(update(&[], &[0x40, 1, 9, 0], &NLRI))), (3, 1));
    // Withdrawn length past the end: 3/1.
    assert_eq!(code(Update::decode(&[0, 50, 0, 0], EBGP4)), (3, 1));
    // A /33 in the NLRI: invalid network field (3/10).
    assert_eq!(
        code(decode(update(
            &[],
            &attrs(&[&ORIGIN, &AS_PATH, &NEXT_HOP]),
            &[33, 1, 2, 3, 4, 5]
        ))),
        (3, 10)
    );
    // An unrecognized well-known attribute: 3/2.
    assert_eq!(
        code(decode(update(
            &[],
            &attrs(&[&ORIGIN, &AS_PATH, &NEXT_HOP, &[0x40, 99, 0]]),
            &NLRI
        ))),
        (3, 2)
    );
    // MP_REACH_NLRI with an impossible next-hop length: optional attribute error (3/9).
    assert_eq!(
        code(decode(update(
            &[],
            &attrs(&[&ORIGIN, &AS_PATH, &[0x80, 14, 8, 0, 2, 1, 3, 1, 2, 3, 0]]),
            &[]
        ))),
        (3, 9)
    );
    // Two MP_REACH_NLRI: 3/1.
    let mp = [
        0x80u8, 14, 21, 0, 2, 1, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    ];
    assert_eq!(
        code(decode(update(
            &[],
            &attrs(&[&ORIGIN, &AS_PATH, &mp, &mp]),
            &[]
        ))),
        (3, 1)
    );
}

#[test]
fn header_and_open_errors() {
    let mut h = [0xffu8; wire::HEADER_LEN];
    h[16..19].copy_from_slice(&[0, 19, 4]);
    assert_eq!(wire::check_header(&h), Ok((wire::KEEPALIVE, 19)));
    let mut bad = h;
    bad[3] = 0;
    assert_eq!(
        wire::check_header(&bad).map_err(|n| (n.code, n.subcode)),
        Err((1, 1))
    );
    let mut long = h;
    long[16..19].copy_from_slice(&[0x13, 0x88, 2]);
    assert_eq!(
        wire::check_header(&long).map_err(|n| (n.code, n.subcode, n.data)),
        Err((1, 2, vec![0x13, 0x88]))
    );
    let mut kind = h;
    kind[18] = 9;
    assert_eq!(
        wire::check_header(&kind).map_err(|n| (n.code, n.subcode)),
        Err((1, 3))
    );
    let mut ka = h;
    ka[16..19].copy_from_slice(&[0, 20, 4]);
    assert_eq!(
        wire::check_header(&ka).map_err(|n| (n.code, n.subcode)),
        Err((1, 2))
    );
    // OPEN version 3: 2/1 with the version we speak.
    let v3 = [3u8, 0xfd, 0xe9, 0, 90, 192, 0, 2, 2, 0];
    let n = Open::decode(&v3).expect_err("version 3");
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
    // Optional parameters longer than the message: 2/0.
    let short = [4u8, 0xfd, 0xe9, 0, 90, 192, 0, 2, 2, 9, 2, 2];
    assert_eq!(Open::decode(&short).map_err(|n| n.code), Err(2));
}

/// Random and mutated messages: every one decodes or gets a NOTIFICATION, never a panic.
#[test]
fn random_bytes_never_panic() {
    let mut rng = ::wire::XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let seed = update(
        &[24, 10, 0, 0],
        &attrs(&[
            &ORIGIN,
            &AS_PATH,
            &NEXT_HOP,
            &[0xc0, 8, 4, 0xfd, 0xe9, 0, 1],
        ]),
        &NLRI,
    );
    for i in 0..200_000 {
        let mut b = if i % 2 == 0 {
            seed.clone()
        } else {
            let len = (rng.next_u64() % 64) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        };
        if i % 2 == 0 {
            for _ in 0..1 + rng.next_u64() % 4 {
                if b.is_empty() {
                    break;
                }
                let at = (rng.next_u64() % b.len() as u64) as usize;
                b[at] = rng.next_u64() as u8;
            }
            let cut = (rng.next_u64() % (b.len() as u64 + 1)) as usize;
            b.truncate(cut.max(b.len() - 2));
        }
        let ctx = Context {
            asn4: i % 3 != 0,
            ebgp: i % 5 != 0,
        };
        let _ = Update::decode(&b, ctx);
        let _ = Open::decode(&b);
        if b.len() >= wire::HEADER_LEN {
            let mut h = [0u8; wire::HEADER_LEN];
            h.copy_from_slice(&b[..wire::HEADER_LEN]);
            let _ = wire::check_header(&h);
        }
    }
}
