//! The Fluss wire protocol: frames, api keys, protobuf messages and a TCP server.
//!
//! This layer knows bytes, not tablets. [`frame`] splits a TCP stream into requests and builds
//! responses; [`api_key`] lists every public api key with the versions this server advertises;
//! [`messages`] holds our own prost structs, whose field numbers and types are those of Fluss's
//! `FlussApi.proto` (proto2); [`server`] accepts connections, answers `ApiVersions` itself,
//! refuses unknown keys and versions, and hands every other request to a [`WireHandler`].
//!
//! Nothing here panics on bytes from the network: decoding returns errors, and a framing error
//! closes only the connection it came from.

pub mod api_key;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod messages;
pub mod request_budget;
pub mod server;
pub mod wire_stats;

pub use api_key::ApiKey;
pub use error::{ResponseBody, WireError, WireResponse};
pub use frame::{FrameCodec, FrameError, RequestFrame, ResponseFrame};
pub use server::{WireConfig, WireHandler, WireServer};
pub use wire_stats::WireStats;
