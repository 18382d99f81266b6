//! MRT TABLE_DUMP_V2 on arbitrary bytes: routes, counted skips or one error, then the end;
//! never a panic, never an endless stream.
#![no_main]

use bgp_glue::mrt::TableDump;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dump = TableDump::new(data);
    let mut items = 0usize;
    for item in dump.by_ref() {
        items += 1;
        // Every record is at least 12 bytes, and a record yields at most 65535 routes.
        assert!(items <= data.len() / 12 * 65_536 + 1);
        if let Ok(route) = item {
            let _ = route.attributes.next_hop_for(&route.prefix);
        }
    }
    let _ = dump.peers().len();
});
