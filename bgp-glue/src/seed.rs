//! Routes seeded from an MRT RIB dump (`tern ctl bgp mrt load FILE`): to pre-seed the FIB
//! before sessions come up, or to benchmark it with a real table.
//!
//! The dump's paths enter the BGP RIB as a peer without a session ([`SEED`]) that loses
//! every comparison it can: its facts are those of an unknown peer (internal, router id
//! 255.255.255.255), so a real peer's path to the same prefix wins as soon as it arrives,
//! and the seeded one takes over again if that goes. A new load replaces the previous one;
//! `bgp mrt clear` withdraws it.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::codec::Attributes;
use crate::mrt::TableDump;
use crate::rib::{Path, PeerId, Rib};

/// The seeded paths' peer id (never a session's: those count up from 0).
pub(crate) const SEED: PeerId = PeerId::MAX;

/// What the last load did.
pub(crate) struct Seed {
    file: String,
    routes: [usize; 2],
    attribute_sets: usize,
    skipped: BTreeMap<&'static str, u64>,
}

impl Seed {
    pub(crate) fn show(&self) -> Value {
        json!({
            "file": self.file,
            "routes_ipv4": self.routes[0],
            "routes_ipv6": self.routes[1],
            "attribute_sets": self.attribute_sets,
            "skipped": self.skipped,
        })
    }
}

/// `bgp mrt load FILE [peer INDEX] [next-hop ADDR]…`: one path per prefix, the dump's
/// first entry or peer INDEX's; `next-hop` replaces the dump's next hops of its family
/// (the collector's peers are rarely tern's neighbours).
pub(crate) fn load(rib: &mut Rib, file: &str, options: &[&str]) -> Result<Seed, String> {
    let mut peer = None;
    let (mut hop4, mut hop6) = (None, None);
    let mut words = options.iter();
    while let Some(word) = words.next() {
        match *word {
            "peer" => {
                let index = words.next().and_then(|p| p.parse::<u16>().ok());
                peer = Some(index.ok_or("peer needs the dump's peer index")?);
            }
            "next-hop" => match words.next().map(|a| a.parse::<IpAddr>()) {
                Some(Ok(IpAddr::V4(a))) => hop4 = Some(a),
                Some(Ok(IpAddr::V6(a))) => hop6 = Some(a),
                _ => return Err("next-hop needs an address".into()),
            },
            other => {
                return Err(format!(
                    "unknown MRT option {other:?}; try peer INDEX, next-hop ADDR"
                ))
            }
        }
    }
    let reader = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut dump = TableDump::new(std::io::BufReader::with_capacity(1 << 20, reader));
    rib.withdraw_peer(SEED, false, None);
    // Equal attribute sets share one allocation, as a session's UPDATE does.
    let mut interned: HashSet<Arc<Attributes>> = HashSet::new();
    let mut routes = [0; 2];
    let mut last: Option<IpNet> = None;
    for route in dump.by_ref() {
        let mut route = match route {
            Ok(r) => r,
            Err(e) => {
                // All or nothing: a dump that breaks half way seeds nothing.
                rib.withdraw_peer(SEED, false, None);
                let n = routes[0] + routes[1];
                return Err(format!("{file}: {e} (after {n} routes; none kept)"));
            }
        };
        let wanted = match peer {
            Some(p) => route.peer == p,
            None => last != Some(route.prefix),
        };
        last = Some(route.prefix);
        if !wanted {
            continue;
        }
        let a = &mut route.attributes;
        match route.prefix {
            IpNet::V4(_) if hop4.is_some() => {
                a.next_hop = hop4;
                a.mp_next_hop = None;
            }
            IpNet::V6(_) if hop6.is_some() => {
                a.mp_next_hop = hop6.map(IpAddr::V6);
                a.mp_link_local = None;
            }
            _ => {}
        }
        if route.attributes.next_hop_for(&route.prefix).is_none() {
            continue;
        }
        let attributes = match interned.get(&route.attributes) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(route.attributes);
                interned.insert(a.clone());
                a
            }
        };
        let path = Path {
            peer: SEED,
            stale: false,
            attributes,
        };
        rib.announce(route.prefix, path);
        routes[usize::from(matches!(route.prefix, IpNet::V6(_)))] += 1;
    }
    Ok(Seed {
        file: file.to_string(),
        routes,
        attribute_sets: interned.len(),
        skipped: dump.skipped,
    })
}
