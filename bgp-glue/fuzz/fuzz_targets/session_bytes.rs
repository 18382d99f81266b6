//! A real Established session (loopback TCP) fed arbitrary bytes: it must end with a
//! NOTIFICATION of a defined code or take everything and keep going; never panic, never
//! hang (the harness fails on either).
#![no_main]

use bgp_glue::loopback::feed_established_session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outcome = match feed_established_session(data) {
        Ok(o) => o,
        Err(e) => panic!("session harness: {e}"),
    };
    if let Some(n) = outcome.notification {
        assert!((1..=6).contains(&n.code), "NOTIFICATION code {}", n.code);
    }
});
