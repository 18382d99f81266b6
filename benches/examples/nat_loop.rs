//! The NAT benchmark's loops without criterion, for `valgrind --tool=callgrind`
//! (instructions per packet): `cargo build --release -p benches --example nat_loop`, then
//! `valgrind --tool=callgrind --toggle-collect='*translate_all*' target/release/examples/nat_loop established`
//! (rounds of 8192 packets of established sessions, in bursts of 32) or `... nat_loop new`
//! (the first packets of 100 000 new flows into an empty shard).
use benches::nat::{full_shard, outbound, random_endpoints, shard, translate_burst, BURST};

const SESSIONS: u32 = 1 << 20;
const NEW: u32 = 100_000;

#[inline(never)]
fn translate_all(s: &mut nat::Shard, packets: &[Vec<u8>], bufs: &mut [Vec<u8>]) -> usize {
    packets
        .chunks(BURST)
        .map(|burst| translate_burst(s, burst, bufs, 1000))
        .sum()
}

fn main() {
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "established".into());
    let mut bufs = vec![vec![0u8; 48]; BURST];
    let (mut shard, packets, rounds) = match mode.as_str() {
        "established" => {
            let packets = random_endpoints(8192, SESSIONS)
                .into_iter()
                .map(outbound)
                .collect::<Vec<_>>();
            (full_shard(SESSIONS), packets, 10)
        }
        "new" => (shard(1 << 17), (0..NEW).map(outbound).collect(), 1),
        other => panic!("nat_loop: unknown mode {other:?} (established or new)"),
    };
    let mut translated = 0;
    for _ in 0..rounds {
        let n = translate_all(&mut shard, &packets, &mut bufs);
        assert_eq!(n, packets.len(), "nat_loop: a packet was not translated");
        translated += n;
    }
    // For scripts/instructions: the packets the collected instructions are divided by.
    println!("packets {translated}");
}
