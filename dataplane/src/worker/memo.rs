//! The forwarding stages' one memo idiom: a burst's packets mostly share a few keys (a
//! route's next hop, a tunnel's underlay next hop), so a stage keeps the last key it
//! resolved with its answer and the next packet with that key skips the table. A memo
//! lives for one burst: the worker clears it when a burst starts, so a changed
//! adjacency is seen by the next burst, as a FIB change is. Only answers that hold for
//! every packet to the key are kept (not an ECMP member choice, which depends on the
//! flow).

/// The last `(key, answer)` of this burst.
#[derive(Debug, Clone, Copy)]
pub(super) struct BurstMemo<V: Copy> {
    last: Option<(u32, V)>,
}

impl<V: Copy> BurstMemo<V> {
    pub(super) const fn new() -> Self {
        BurstMemo { last: None }
    }

    /// The answer remembered for `key`, if it is the last one.
    #[inline(always)]
    pub(super) fn get(&self, key: u32) -> Option<V> {
        match self.last {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        }
    }

    #[inline(always)]
    pub(super) fn remember(&mut self, key: u32, answer: V) {
        self.last = Some((key, answer));
    }

    #[inline(always)]
    pub(super) fn clear(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_key_until_cleared() {
        let mut m = BurstMemo::new();
        assert_eq!(m.get(7), None);
        m.remember(7, 'a');
        assert_eq!((m.get(7), m.get(8)), (Some('a'), None));
        m.remember(8, 'b');
        assert_eq!((m.get(7), m.get(8)), (None, Some('b')));
        m.clear();
        assert_eq!(m.get(8), None);
    }
}
