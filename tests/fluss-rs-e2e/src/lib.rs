//! The end-to-end test of kvtablet with the official Rust client, `fluss-rs` 1.0.0, lives in
//! `tests/fluss_rs_client.rs`; this crate has no library code.
