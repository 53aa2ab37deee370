//! A [`WireHandler`] decorator that records every request it passes on in [`NodeMetrics`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};

use crate::metrics::NodeMetrics;
use crate::wire::error::UNKNOWN_SERVER_ERROR;
use crate::wire::{ApiKey, WireHandler, WireResponse};

/// Passes every request to `inner` and records its api key, outcome and latency.
pub struct MeteredHandler {
    inner: Arc<dyn WireHandler>,
    metrics: Arc<NodeMetrics>,
}

impl MeteredHandler {
    pub fn new(inner: Arc<dyn WireHandler>, metrics: Arc<NodeMetrics>) -> MeteredHandler {
        MeteredHandler { inner, metrics }
    }
}

impl WireHandler for MeteredHandler {
    fn handle(
        &self,
        api_key: i16,
        api_version: i16,
        body: Bytes,
    ) -> BoxFuture<'static, WireResponse> {
        // The server only hands on advertised keys; "UNKNOWN" keeps a label if that changes.
        let api = ApiKey::from_id(api_key).map_or("UNKNOWN", ApiKey::name);
        let started = Instant::now();
        let pending = self.inner.handle(api_key, api_version, body);
        let metrics = Arc::clone(&self.metrics);
        async move {
            match AssertUnwindSafe(pending).catch_unwind().await {
                Ok(response) => {
                    let error_code = response.as_ref().err().map(|error| error.code);
                    metrics.record_request(api, started.elapsed(), error_code);
                    response
                }
                Err(panic) => {
                    // The server answers a panic UNKNOWN_SERVER_ERROR; count it so, then let
                    // the server see the panic as it would without this decorator.
                    metrics.record_request(api, started.elapsed(), Some(UNKNOWN_SERVER_ERROR));
                    std::panic::resume_unwind(panic)
                }
            }
        }
        .boxed()
    }
}
