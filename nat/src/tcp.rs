//! TCP tracking after RFC 6146 §3.5.2 and RFC 7857 §2.1–2.2, reduced to what a NAT needs:
//! when a session counts as established (long timeout) and when it is transitory (short
//! timeout, first to go when the table is full).
//!
//! ```text
//!  SYN from one side        → Opening   (transitory)
//!  SYN from the other side  → Established   (covers SYN/SYN-ACK and simultaneous open)
//!  FIN from one side        → Established (RFC 6146 FIN_RCV keeps the established lifetime)
//!  FIN from both sides      → Closing   (transitory)
//!  RST                      → Reset     (transitory: kept 4 min, RFC 7857 §2.2, so a
//!                                        spurious RST does not kill the mapping)
//!  any non-RST in Reset     → back to what it was before the RST
//! ```

use crate::flow::{FIN, RST, SYN};

/// What has been seen of a TCP session, one bit each (it lives in the session's one line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Track(u8);

/// SYN seen from the original / reply side, FIN likewise, RST last seen.
const SYN_ORIG: u8 = 1;
const SYN_REPLY: u8 = 2;
const FIN_ORIG: u8 = 4;
const FIN_REPLY: u8 = 8;
const RESET: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Opening,
    Established,
    /// FIN seen from one side only.
    HalfClosed,
    Closing,
    Reset,
}

impl Track {
    /// The tracker of a session created by a packet with `flags` in the original direction.
    pub fn new(flags: u8) -> Track {
        let mut t = Track::default();
        t.see(flags, true);
        t
    }

    /// Accounts for a packet with `flags` from the original side (`orig`) or the reply side.
    pub fn see(&mut self, flags: u8, orig: bool) {
        if flags & RST != 0 {
            self.0 |= RESET;
            return;
        }
        self.0 &= !RESET;
        let (syn, fin) = if orig {
            (SYN_ORIG, FIN_ORIG)
        } else {
            (SYN_REPLY, FIN_REPLY)
        };
        if flags & SYN != 0 {
            self.0 |= syn;
        }
        if flags & FIN != 0 {
            self.0 |= fin;
        }
    }

    fn has(&self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    pub fn state(&self) -> State {
        if self.has(RESET) {
            State::Reset
        } else if self.has(FIN_ORIG | FIN_REPLY) {
            State::Closing
        } else if !self.has(SYN_ORIG | SYN_REPLY) {
            State::Opening
        } else if self.0 & (FIN_ORIG | FIN_REPLY) != 0 {
            State::HalfClosed
        } else {
            State::Established
        }
    }

    /// Whether the long (established) timeout applies.
    pub fn established(&self) -> bool {
        matches!(self.state(), State::Established | State::HalfClosed)
    }

    pub fn name(&self) -> &'static str {
        match self.state() {
            State::Opening => "opening",
            State::Established => "established",
            State::HalfClosed => "half-closed",
            State::Closing => "closing",
            State::Reset => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ACK;

    #[test]
    fn handshake_then_close() {
        let mut t = Track::new(SYN);
        assert_eq!(t.state(), State::Opening);
        t.see(SYN | ACK, false);
        assert_eq!(t.state(), State::Established);
        t.see(ACK, true);
        t.see(FIN | ACK, true);
        assert_eq!(t.state(), State::HalfClosed);
        assert!(t.established());
        t.see(FIN | ACK, false);
        assert_eq!(t.state(), State::Closing);
        assert!(!t.established());
    }

    #[test]
    fn simultaneous_open() {
        let mut t = Track::new(SYN);
        t.see(SYN, false);
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn reset_is_transitory_and_recoverable() {
        let mut t = Track::new(SYN);
        t.see(SYN | ACK, false);
        t.see(RST, false);
        assert_eq!(t.state(), State::Reset);
        assert!(!t.established());
        t.see(ACK, true);
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn only_reply_syn_is_still_opening() {
        let mut t = Track::new(ACK);
        assert_eq!(t.state(), State::Opening);
        t.see(SYN | ACK, false);
        assert_eq!(t.state(), State::Opening);
    }
}
