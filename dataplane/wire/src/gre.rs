//! The GRE header (RFC 2784 with the key and sequence number extensions of RFC 2890).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```

pub const FLAG_CHECKSUM: u16 = 0x8000;
pub const FLAG_KEY: u16 = 0x2000;
pub const FLAG_SEQUENCE: u16 = 0x1000;
pub const VERSION_MASK: u16 = 0x0007;
/// Every bit that is neither C, K, S nor the version: routing (RFC 1701), strict source
/// route, recursion control and the reserved flags. tern drops packets with any of them set.
pub const UNKNOWN_FLAGS: u16 = !(FLAG_CHECKSUM | FLAG_KEY | FLAG_SEQUENCE | VERSION_MASK);

pub const TYPE_IPV4: u16 = 0x0800;
pub const TYPE_IPV6: u16 = 0x86dd;

/// A parsed GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u16,
    pub protocol: u16,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
    /// Header length in bytes (4 to 16).
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Truncated,
    BadVersion,
    UnknownFlags,
}

impl Header {
    pub fn has_checksum(&self) -> bool {
        self.flags & FLAG_CHECKSUM != 0
    }

    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Header, ParseError> {
        let word = |at: usize| -> Result<u32, ParseError> {
            b.get(at..at + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or(ParseError::Truncated)
        };
        let first = word(0)?;
        let flags = (first >> 16) as u16;
        if flags & VERSION_MASK != 0 {
            return Err(ParseError::BadVersion);
        }
        if flags & UNKNOWN_FLAGS != 0 {
            return Err(ParseError::UnknownFlags);
        }
        let mut len = 4;
        if flags & FLAG_CHECKSUM != 0 {
            word(len)?;
            len += 4;
        }
        let key = if flags & FLAG_KEY != 0 {
            len += 4;
            Some(word(len - 4)?)
        } else {
            None
        };
        let sequence = if flags & FLAG_SEQUENCE != 0 {
            len += 4;
            Some(word(len - 4)?)
        } else {
            None
        };
        Ok(Header {
            flags,
            protocol: first as u16,
            key,
            sequence,
            len,
        })
    }

    /// Writes the header into `b[..len]` with a zero checksum field (see
    /// [`fill_checksum`]).
    pub fn write(&self, b: &mut [u8]) {
        let mut flags = 0u16;
        let mut at = 4;
        if self.flags & FLAG_CHECKSUM != 0 {
            flags |= FLAG_CHECKSUM;
            b[4..8].fill(0);
            at += 4;
        }
        if let Some(k) = self.key {
            flags |= FLAG_KEY;
            b[at..at + 4].copy_from_slice(&k.to_be_bytes());
            at += 4;
        }
        if let Some(s) = self.sequence {
            flags |= FLAG_SEQUENCE;
            b[at..at + 4].copy_from_slice(&s.to_be_bytes());
        }
        b[0..2].copy_from_slice(&flags.to_be_bytes());
        b[2..4].copy_from_slice(&self.protocol.to_be_bytes());
    }
}

/// Fills the checksum of a GRE packet (`gre` = header + payload, checksum field zero):
/// the Internet checksum of the whole GRE packet (RFC 2784 §2.5).
pub fn fill_checksum(gre: &mut [u8]) {
    let c = crate::checksum(gre);
    gre[4..6].copy_from_slice(&c.to_be_bytes());
}

/// Whether the checksum of a received GRE packet verifies.
pub fn checksum_ok(gre: &[u8]) -> bool {
    crate::checksum(gre) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_combination_round_trips() {
        for bits in 0..8u16 {
            let h = Header {
                flags: if bits & 1 != 0 { FLAG_CHECKSUM } else { 0 },
                protocol: TYPE_IPV6,
                key: (bits & 2 != 0).then_some(0xdead_beef),
                sequence: (bits & 4 != 0).then_some(7),
                len: 4 + 4 * bits.count_ones() as usize,
            };
            let mut b = [0u8; 16];
            h.write(&mut b);
            let back = Header::parse(&b[..h.len]).expect("parses");
            assert_eq!(back.key, h.key);
            assert_eq!(back.sequence, h.sequence);
            assert_eq!(back.len, h.len);
            assert_eq!(back.has_checksum(), bits & 1 != 0);
            if h.len > 4 {
                assert_eq!(
                    Header::parse(&b[..h.len - 1]),
                    Err(ParseError::Truncated),
                    "{bits}"
                );
            }
        }
    }

    #[test]
    fn version_and_unknown_flags_are_refused() {
        assert_eq!(Header::parse(&[0, 1, 8, 0]), Err(ParseError::BadVersion));
        for flag in [0x4000u16, 0x0800, 0x0100, 0x0008] {
            let [hi, lo] = flag.to_be_bytes();
            assert_eq!(
                Header::parse(&[hi, lo, 8, 0, 0, 0, 0, 0]),
                Err(ParseError::UnknownFlags),
                "{flag:#06x}"
            );
        }
    }
}
