//! kvtablet-tests: cross-crate tests (engine conformance, simulator against prod) and the
//! helpers they share.

pub mod mem_fs;
