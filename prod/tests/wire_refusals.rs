//! What the node refuses at the first RPC, with Fluss's code and a message naming the feature:
//! a client configured for SASL is told that authentication is not supported, and gives up
//! (AUTHENTICATE_EXCEPTION, 46, is not retried) instead of retrying or being let in.

// Tests may read wall time and own a tokio runtime.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use kvtablet_prod::client::{admin, ClientError};
use kvtablet_prod::wire::error::AUTHENTICATE_EXCEPTION;
use kvtablet_prod::wire::ApiKey;

#[test]
fn a_sasl_authenticate_request_is_refused_naming_the_feature() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::runtime().block_on(async {
        let (mut served, connection) = support::start(dir.path()).await;
        // AuthenticateRequest{protocol: "PLAIN", token: "\0user\0password"}, as the clients
        // send it: field 1 (string), field 2 (bytes).
        let mut body = vec![0x0a, 5];
        body.extend_from_slice(b"PLAIN");
        let token = b"\0user\0password";
        body.extend_from_slice(&[0x12, token.len() as u8]);
        body.extend_from_slice(token);
        let refused = connection
            .call_raw(ApiKey::Authenticate, Bytes::from(body), Duration::from_secs(10))
            .await
            .expect_err("authentication is refused");
        match refused {
            ClientError::Server { code, message, .. } => {
                assert_eq!(code, AUTHENTICATE_EXCEPTION, "{message}");
                assert!(message.contains("SASL"), "{message}");
            }
            other => panic!("expected an error response, got {other}"),
        }
        // The connection and the node keep serving.
        admin::create_database(&connection, "after_refusal", false)
            .await
            .expect("the node still serves this connection");
        served.stop().await;
    });
}
