//! Changelog frames from disk: decoding arbitrary bytes never panics, and whatever decodes
//! re-encodes to exactly the bytes it came from.
#![no_main]

use kvtablet_core::log::log_batch::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((batch, len)) = decode_batch(bytes) {
        assert_eq!(encode_batch(&batch), bytes[..len]);
    }
});
