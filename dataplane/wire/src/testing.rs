//! Fixtures for tests and benchmarks (the `testing` feature): not part of the product.

/// Marsaglia's xorshift64: repeatable pseudo-random input for tests, fuzz-style loops and
/// benchmark fixtures, the same sequence on every run for a given seed. Not for anything an
/// outsider could aim at (hash seeds come from ahash's runtime RNG).
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator starting from `seed` (not zero: zero stays zero).
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
