//! ECN across a tunnel, RFC 6040.
//!
//! **Encapsulation** uses RFC 6040's *normal mode* (§4.1): the outer ECN field is a copy of
//! the inner one, CE included, so congestion marked before the tunnel stays visible to AQMs
//! inside it and every tunnel-aware decapsulator reconstructs the same inner field.
//!
//! **Decapsulation** follows RFC 6040 Figure 4: the full 4×4 table below, including the one
//! drop case (CE outside, Not-ECT inside: the inner transport cannot be told about
//! congestion, so the packet is dropped as a congested router would have done).

/// ECN codepoints: the two low bits of the IPv4 TOS / IPv6 traffic class.
pub const NOT_ECT: u8 = 0b00;
pub const ECT1: u8 = 0b01;
pub const ECT0: u8 = 0b10;
pub const CE: u8 = 0b11;

/// Outer ECN field for an inner one (normal mode: copy).
#[inline(always)]
pub fn encap(inner: u8) -> u8 {
    inner & 0b11
}

/// The ECN field the decapsulated inner packet leaves with, or `None`: drop.
///
/// ```text
///             outer: Not-ECT  ECT(0)   ECT(1)   CE
/// inner Not-ECT      Not-ECT  Not-ECT  Not-ECT  drop
/// inner ECT(0)       ECT(0)   ECT(0)   ECT(1)   CE
/// inner ECT(1)       ECT(1)   ECT(1)   ECT(1)   CE
/// inner CE           CE       CE       CE       CE
/// ```
#[inline(always)]
pub fn decap(outer: u8, inner: u8) -> Option<u8> {
    let (outer, inner) = (outer & 0b11, inner & 0b11);
    match (inner, outer) {
        (NOT_ECT, CE) => None,
        (NOT_ECT, _) => Some(NOT_ECT),
        (CE, _) | (_, CE) => Some(CE),
        (ECT0, ECT1) => Some(ECT1),
        (inner, _) => Some(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6040 Figure 4, written out row by row (rows: inner; columns: outer Not-ECT,
    /// ECT(0), ECT(1), CE). `None` is the drop case.
    const FIGURE_4: [(u8, [Option<u8>; 4]); 4] = [
        (NOT_ECT, [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None]),
        (ECT0, [Some(ECT0), Some(ECT0), Some(ECT1), Some(CE)]),
        (ECT1, [Some(ECT1), Some(ECT1), Some(ECT1), Some(CE)]),
        (CE, [Some(CE), Some(CE), Some(CE), Some(CE)]),
    ];
    const OUTER: [u8; 4] = [NOT_ECT, ECT0, ECT1, CE];

    #[test]
    fn all_sixteen_decap_combinations_match_rfc6040_figure_4() {
        let mut checked = 0;
        for (inner, row) in FIGURE_4 {
            for (outer, expected) in OUTER.iter().zip(row) {
                assert_eq!(
                    decap(*outer, inner),
                    expected,
                    "inner {inner:02b} outer {outer:02b}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 16);
    }

    #[test]
    fn encap_copies_every_codepoint_and_decap_of_own_encap_is_identity() {
        for inner in [NOT_ECT, ECT0, ECT1, CE] {
            assert_eq!(encap(inner), inner);
            assert_eq!(decap(encap(inner), inner), Some(inner));
        }
    }
}
