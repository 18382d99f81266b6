//! Reading the real BGP tables in `testbed/data` (xz-compressed text, one prefix a line,
//! update streams as "A prefix" / "W prefix"), and a seeded PRNG for test and bench keys.
//! Shared by the lpm tests and the benches (included with `#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// `$TERN_DATA`, else the repository's own copy in `testbed/data`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("TERN_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testbed/data"),
    }
}

pub fn lines(file: &str) -> Vec<String> {
    let path = data_dir().join(file);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(xz2::read::XzDecoder::new(f))
        .lines()
        .map(|l| l.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn parse<N: std::str::FromStr>(file: &str, text: &str) -> N {
    text.parse()
        .unwrap_or_else(|_| panic!("{file}: bad prefix {text:?}"))
}

pub fn table<N: std::str::FromStr>(file: &str) -> Vec<N> {
    lines(file).iter().map(|l| parse(file, l.trim())).collect()
}

/// An update stream: `(true, prefix)` announces, `(false, prefix)` withdraws.
pub fn updates<N: std::str::FromStr>(file: &str) -> Vec<(bool, N)> {
    lines(file)
        .iter()
        .map(|l| {
            let (op, net) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("{file}: bad line {l:?}"));
            (op == "A", parse(file, net.trim()))
        })
        .collect()
}

pub const RIS_V4: &str = "ris-rrc00-AS3333-20260511-ipv4-rib.txt.xz";
pub const RIS_V6: &str = "ris-rrc00-AS3333-20260511-ipv6-rib.txt.xz";
pub const RIS_V4_UPDATES: &str = "ris-rrc00-AS3333-20260511-ipv4-updates.txt.xz";
pub const RIS_V6_UPDATES: &str = "ris-rrc00-AS3333-20260511-ipv6-updates.txt.xz";
pub const TIER1_V4: &str = "tier1-2023-ipv4.txt.xz";
pub const TIER1_V6: &str = "tier1-2023-ipv6.txt.xz";

/// The synthetic next hop of a prefix (the data has none): a hash mod 512.
pub fn next_hop_of(key: u128, len: u8) -> u32 {
    (mix(key as u64 ^ (key >> 64) as u64 ^ ((len as u64) << 56)) % 512) as u32
}

/// The synthetic next hop of `net`.
pub fn next_hop<F: TableFamily>(net: &F::Net) -> u32 {
    let (bits, len) = F::net_bits(net);
    next_hop_of(bits, len)
}

/// What the table helpers need of an address family, so that a test or bench is written
/// once for both (`lpm::V4`, `lpm::V6`). Addresses travel as `u128` bits.
pub trait TableFamily: lpm::Family {
    const BITS: u32;
    /// The family's RIS 2026 table, its 24 h of updates, and the tier-1 2023 table.
    const RIS: &'static str;
    const RIS_UPDATES: &'static str;
    const TIER1: &'static str;
    /// A uniformly random address's bits.
    fn random(rng: &mut Rng) -> u128;
    fn addr(bits: u128) -> Self::Addr;
    fn addr_bits(addr: Self::Addr) -> u128;
    fn net_bits(net: &Self::Net) -> (u128, u8);
    /// The default route, 0.0.0.0/0 or ::/0.
    fn default_route() -> Self::Net;
}

impl TableFamily for lpm::V4 {
    const BITS: u32 = 32;
    const RIS: &'static str = RIS_V4;
    const RIS_UPDATES: &'static str = RIS_V4_UPDATES;
    const TIER1: &'static str = TIER1_V4;
    fn random(rng: &mut Rng) -> u128 {
        rng.next_u64() as u32 as u128
    }
    fn addr(bits: u128) -> Ipv4Addr {
        Ipv4Addr::from_bits(bits as u32)
    }
    fn addr_bits(addr: Ipv4Addr) -> u128 {
        addr.to_bits() as u128
    }
    fn net_bits(net: &Ipv4Net) -> (u128, u8) {
        (net.network().to_bits() as u128, net.prefix_len())
    }
    fn default_route() -> Ipv4Net {
        Ipv4Net::default()
    }
}

impl TableFamily for lpm::V6 {
    const BITS: u32 = 128;
    const RIS: &'static str = RIS_V6;
    const RIS_UPDATES: &'static str = RIS_V6_UPDATES;
    const TIER1: &'static str = TIER1_V6;
    fn random(rng: &mut Rng) -> u128 {
        rng.u128()
    }
    fn addr(bits: u128) -> Ipv6Addr {
        Ipv6Addr::from_bits(bits)
    }
    fn addr_bits(addr: Ipv6Addr) -> u128 {
        addr.to_bits()
    }
    fn net_bits(net: &Ipv6Net) -> (u128, u8) {
        (net.network().to_bits(), net.prefix_len())
    }
    fn default_route() -> Ipv6Net {
        Ipv6Net::default()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// SplitMix64: small, seeded, good enough for keys.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        mix(self.0)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn u128(&mut self) -> u128 {
        ((self.next_u64() as u128) << 64) | self.next_u64() as u128
    }
}

/// Half the keys inside random prefixes of the table (random host bits), half uniform.
pub fn keys<F: TableFamily>(table: &[F::Net], count: usize, rng: &mut Rng) -> Vec<F::Addr> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 && !table.is_empty() {
                let net = table[rng.below(table.len() as u64) as usize];
                let (bits, len) = F::net_bits(&net);
                let host_bits = F::BITS - len as u32;
                let host_mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
                F::addr(bits | (F::random(rng) & host_mask))
            } else {
                F::addr(F::random(rng))
            }
        })
        .collect()
}
