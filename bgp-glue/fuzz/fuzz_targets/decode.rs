//! The message decoders on arbitrary bytes: the header check, OPEN, UPDATE (with 2- and
//! 4-octet AS paths, eBGP and iBGP), NOTIFICATION. Each returns a value or the NOTIFICATION
//! to send; none may panic. A decoded UPDATE must also survive what the speaker does with
//! it (next hops, AS-path checks).
#![no_main]

use bgp_glue::codec::{self, Context, Notification, Open, Update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    if let Ok(header) =
        <[u8; codec::HEADER_LEN]>::try_from(body.get(..codec::HEADER_LEN).unwrap_or(&[]))
    {
        let _ = codec::check_header(&header);
    }
    let _ = Open::decode(body);
    let _ = Notification::decode(body).to_string();
    let ctx = Context {
        asn4: flags & 1 != 0,
        ebgp: flags & 2 != 0,
    };
    if let Ok(u) = Update::decode(body, ctx) {
        for net in u.announced.iter().chain(&u.withdrawn) {
            let _ = u.attributes.next_hop_for(net);
        }
        let _ = (
            u.attributes.path_len(),
            u.attributes.first_as(),
            u.attributes.contains_as(65000),
        );
        let _ = u.attributes.as_path_string();
    }
});
