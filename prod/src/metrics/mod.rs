//! Prometheus metrics of a node, served on their own port.
//!
//! [`MeteredHandler`] wraps the gateway and counts every request it hands on, by api key, with
//! its errors (answers sent as ERROR_RESPONSE, by error code) and its latency. ApiVersions is
//! answered by the wire server itself and is not counted. [`NodeMetrics`] also reports, read
//! from the tablet server at each scrape, the open scan sessions and each led bucket's flush
//! lag. [`MetricsServer`] answers `GET /metrics` over plain HTTP/1.1.

pub mod metered_handler;
pub mod metrics_server;
pub mod node_metrics;

pub use metered_handler::MeteredHandler;
pub use metrics_server::MetricsServer;
pub use node_metrics::NodeMetrics;
