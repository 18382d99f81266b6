//! The real BGP tables in `testbed/data` (RIPE RIS rrc00, 2026-05-11), read for the
//! benchmarks and the tests that load a table into tern.

use std::io::Read;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub const RIS_V4: &str = "ris-rrc00-AS3333-20260511-ipv4-rib.txt.xz";
pub const RIS_V6: &str = "ris-rrc00-AS3333-20260511-ipv6-rib.txt.xz";
pub const RIS_V4_UPDATES: &str = "ris-rrc00-AS3333-20260511-ipv4-updates.txt.xz";
pub const RIS_V6_UPDATES: &str = "ris-rrc00-AS3333-20260511-ipv6-updates.txt.xz";

/// `name` in `$TERN_DATA`, else in the repository's own copy (`testbed/data`).
pub fn data_file(name: &str) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("TERN_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"),
    };
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing", path.display()))
    }
}

/// The decompressed text of an `.xz` data file.
pub fn read_xz(name: &str) -> Result<String, String> {
    let path = data_file(name)?;
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    xz2::read::XzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

/// The documentation and benchmarking ranges the test wires use: table prefixes that
/// overlap them are left out so that they cannot capture test traffic.
fn overlaps_test_ranges(net: &IpNet) -> bool {
    const OURS: [&str; 4] = [
        "198.18.0.0/15",
        "192.0.2.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    ];
    OURS.iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .any(|o| o.contains(net) || net.contains(&o))
}

fn prefixes(text: &str) -> impl Iterator<Item = IpNet> + '_ {
    text.lines()
        .filter_map(|l| l.trim().parse::<IpNet>().ok())
        .filter(|n| !overlaps_test_ranges(n))
}

/// The RIS IPv4 table (1.04 M prefixes), without prefixes that overlap the test ranges.
pub fn ris_v4() -> Result<Vec<Ipv4Net>, String> {
    let text = read_xz(RIS_V4)?;
    Ok(prefixes(&text)
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        })
        .collect())
}

/// The RIS IPv6 table (246 k prefixes), without prefixes that overlap the test ranges.
pub fn ris_v6() -> Result<Vec<Ipv6Net>, String> {
    let text = read_xz(RIS_V6)?;
    Ok(prefixes(&text)
        .filter_map(|n| match n {
            IpNet::V6(n) => Some(n),
            IpNet::V4(_) => None,
        })
        .collect())
}

/// A prefix file of one prefix per line (IPv4 only), for `tern-bench --table FILE`.
pub fn v4_file(path: &str) -> Result<Vec<Ipv4Net>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(prefixes(&text)
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        })
        .collect())
}

/// Every `step`-th element: a small table spread over the whole address space.
pub fn sample<T: Copy>(all: &[T], step: usize) -> Vec<T> {
    all.iter().step_by(step.max(1)).copied().collect()
}

/// One line of an update stream: an announcement (insert or replace) or a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub announce: bool,
    pub net: IpNet,
}

/// The RIS 24 h update stream of one family, in order, without prefixes that overlap the
/// test ranges.
pub fn ris_updates(v6: bool) -> Result<Vec<Update>, String> {
    let text = read_xz(if v6 { RIS_V6_UPDATES } else { RIS_V4_UPDATES })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (kind, net) = l.trim().split_once(' ')?;
            let net: IpNet = net.trim().parse().ok()?;
            let announce = match kind {
                "A" => true,
                "W" => false,
                _ => return None,
            };
            (!overlaps_test_ranges(&net)).then_some(Update { announce, net })
        })
        .collect())
}
