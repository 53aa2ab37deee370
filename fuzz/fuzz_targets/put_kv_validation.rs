//! PutKv validation on batches with valid frames and CRCs but arbitrary rows: it never panics,
//! and whatever it accepts the readers can serve (see
//! `kvtablet_prod::format::decoder_check::check_put_kv_validation`, which the prod tests also
//! run).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    kvtablet_prod::format::decoder_check::check_put_kv_validation(input);
});
