//! The end-to-end tests of kvtablet with the official Rust client, `fluss-rs` 1.0.0, live in
//! `tests/`: `fluss_rs_client.rs` (upserts, partial updates, deletes, lookups, the changelog),
//! `fluss_rs_types.rs` (every scalar type, as values and as keys; ARRAY, MAP and ROW values,
//! refused as keys), `fluss_rs_partitions.rs` (partitioned tables), `fluss_rs_lake_format.rs`
//! (paimon and iceberg key encoding) and `support/` (what they share). This crate has no library
//! code.
