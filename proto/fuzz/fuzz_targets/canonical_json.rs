//! Any bytes: parsing must not panic, and whatever parses must encode to a
//! canonical form that parses back to the same value and re-encodes to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_proto::canonical_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = canonical_json::parse(data) {
        let encoded = value.to_canonical_bytes();
        let again = canonical_json::parse(&encoded).expect("canonical output parses");
        assert_eq!(again, value);
        assert_eq!(again.to_canonical_bytes(), encoded);
    }
});
