//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4): every backend fills a
//! prime-sized lookup table from its own permutation of the slots, round-robin, so the
//! table is balanced and removing one of N backends moves about 1/N of the slots.

/// Table sizes: primes, each above 100 × the backends it serves.
const PRIMES: [usize; 8] = [101, 211, 409, 809, 1601, 3203, 6421, 65537];

/// The smallest table size from `PRIMES` that is more than 100 × `backends`.
pub fn table_size(backends: usize) -> usize {
    PRIMES
        .iter()
        .copied()
        .find(|&p| p > 100 * backends.max(1))
        .unwrap_or(PRIMES[PRIMES.len() - 1])
}

/// The most backends a balancer may have (so that the largest prime keeps > 100 × N).
pub const MAX_BACKENDS: usize = 655;

/// The splitmix64 finaliser: a fixed, well-spread 64-bit mix.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// Builds the table for backends named by `ids` (a stable identity, e.g. address and
/// port), of which those with `up[i]` false are left out. Slots hold backend indices;
/// with no backend up, every slot is `u16::MAX`.
pub fn build(ids: &[u64], up: &[bool], size: usize) -> Vec<u16> {
    let mut table = vec![u16::MAX; size];
    let live: Vec<usize> = (0..ids.len()).filter(|&i| up[i]).collect();
    if live.is_empty() {
        return table;
    }
    let perm: Vec<(usize, usize)> = live
        .iter()
        .map(|&i| {
            let offset = (mix(ids[i]) % size as u64) as usize;
            let skip = (mix(ids[i] ^ 0x9e3779b97f4a7c15) % (size as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0usize; live.len()];
    let mut filled = 0;
    while filled < size {
        for (k, &backend) in live.iter().enumerate() {
            let (offset, skip) = perm[k];
            loop {
                let slot = (offset + next[k] * skip) % size;
                next[k] += 1;
                if table[slot] == u16::MAX {
                    table[slot] = backend as u16;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_prime_and_large_enough() {
        for n in [1, 2, 5, 10, 64, MAX_BACKENDS] {
            let m = table_size(n);
            assert!(m > 100 * n, "{m} for {n}");
            assert!((2..m)
                .take_while(|d| d * d <= m)
                .all(|d| !m.is_multiple_of(d)));
        }
    }

    #[test]
    fn balanced_and_minimal_disruption() {
        let ids: Vec<u64> = (0..10u64).map(|i| 0xc000_0200_0050 + i).collect();
        let size = table_size(ids.len());
        let all = build(&ids, &[true; 10], size);
        let mut counts = [0usize; 10];
        for &b in &all {
            counts[b as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= size / 10 / 10 + 2, "balance {counts:?}");

        let mut up = [true; 10];
        up[3] = false;
        let without = build(&ids, &up, size);
        let moved = all
            .iter()
            .zip(&without)
            .filter(|(a, b)| a != b && **a != 3)
            .count();
        assert!(without.iter().all(|&b| b != 3));
        // Only slots of the removed backend should move; Maglev allows a little more.
        assert!(
            moved < size / 50,
            "{moved} of {size} slots of live backends moved"
        );
    }
}
