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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Track {
    /// SYN seen from the original / reply side.
    syn_orig: bool,
    syn_reply: bool,
    fin_orig: bool,
    fin_reply: bool,
    reset: bool,
}

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
            self.reset = true;
            return;
        }
        self.reset = false;
        if flags & SYN != 0 {
            if orig {
                self.syn_orig = true;
            } else {
                self.syn_reply = true;
            }
        }
        if flags & FIN != 0 {
            if orig {
                self.fin_orig = true;
            } else {
                self.fin_reply = true;
            }
        }
    }

    pub fn state(&self) -> State {
        if self.reset {
            State::Reset
        } else if self.fin_orig && self.fin_reply {
            State::Closing
        } else if !(self.syn_orig && self.syn_reply) {
            State::Opening
        } else if self.fin_orig || self.fin_reply {
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
