//! Every Fluss format decoder on arbitrary bytes: none panics, and whatever decodes
//! re-encodes to something that decodes to the same value (see
//! `kvtablet_prod::format::decoder_check`, which the prod tests also run).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    kvtablet_prod::format::decoder_check::check_decoders(input);
});
