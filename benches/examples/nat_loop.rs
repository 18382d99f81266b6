//! The NAT benchmark's established-flow loop (bursts of 32) without criterion, for
//! `valgrind --tool=callgrind` (instructions per packet):
//! `cargo build --release -p benches --example nat_loop`, then
//! `valgrind --tool=callgrind --toggle-collect='*translate_all*' target/release/examples/nat_loop`.
use benches::nat::{full_shard, outbound, random_endpoints, translate_burst, BURST};

const SESSIONS: u32 = 1 << 20;

#[inline(never)]
fn translate_all(s: &mut nat::Shard, packets: &[Vec<u8>], bufs: &mut [Vec<u8>]) -> usize {
    packets
        .chunks(BURST)
        .map(|burst| translate_burst(s, burst, bufs, 1000))
        .sum()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let mut shard = full_shard(SESSIONS);
    let packets: Vec<Vec<u8>> = random_endpoints(8192, SESSIONS)
        .into_iter()
        .map(outbound)
        .collect();
    let mut bufs = vec![vec![0u8; 48]; BURST];
    for _ in 0..rounds {
        let n = translate_all(&mut shard, &packets, &mut bufs);
        assert_eq!(n, packets.len(), "nat_loop: a packet was not translated");
    }
}
