//! Bytes from the network: the request and response frame decoders and every wire message
//! decoder never panic, and whatever a message decoder accepts re-encodes stably.
#![no_main]

use kvtablet_prod::wire::fuzzing::decode_everything;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(unstable) = decode_everything(bytes) {
        panic!("{unstable}");
    }
});
