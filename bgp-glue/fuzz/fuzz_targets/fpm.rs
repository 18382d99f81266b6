//! zebra's FPM stream on arbitrary bytes: frame splitting and netlink route decoding give
//! routes, named skips or an error; never a panic.
#![no_main]

use bgp_glue::fpm::{decode_netlink, split_frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((frames, used)) = split_frames(data) {
        assert!(used <= data.len());
        for frame in frames {
            let (mut routes, mut skipped) = (Vec::new(), Vec::new());
            let _ = decode_netlink(frame, &mut routes, &mut skipped);
        }
    }
    let (mut routes, mut skipped) = (Vec::new(), Vec::new());
    let _ = decode_netlink(data, &mut routes, &mut skipped);
});
