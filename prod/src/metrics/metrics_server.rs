//! A minimal HTTP/1.1 responder for Prometheus scrapes: `GET /metrics` answers the rendered
//! metrics; anything else is refused. One request per connection (`Connection: close`). A
//! request head is read for at most [`HEAD_TIMEOUT`] and [`HEAD_BYTES_MAX`] bytes, and at most
//! [`CONNECTIONS_MAX`] connections are served at once, so a slow or hostile peer costs little.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::metrics::node_metrics::CONTENT_TYPE;

/// How long a peer has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read; a longer one is answered 431.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Scrapes served at once; one more connection is closed at once.
pub const CONNECTIONS_MAX: usize = 16;
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What renders the body of `/metrics`, called once per scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A bound listener, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(MetricsServer { listener, local_addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves scrapes until `shutdown` completes; scrapes still in progress then are dropped.
    pub async fn serve(self, render: Render, shutdown: impl Future<Output = ()>) {
        let MetricsServer { listener, local_addr } = self;
        tracing::info!("metrics endpoint listening on {local_addr}");
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_joined) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= CONNECTIONS_MAX {
                            tracing::debug!(%peer, "too many metrics connections; closing one");
                            drop(stream);
                            continue;
                        }
                        connections.spawn(serve_connection(stream, Arc::clone(&render)));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a metrics connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
        tracing::info!(%local_addr, "metrics endpoint stopped");
    }
}

async fn serve_connection(mut stream: TcpStream, render: Render) {
    let response = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_elapsed) => return,
        Ok(Err(_error)) => return,
        Ok(Ok(None)) => response(431, "text/plain", "request head too large\n", true),
        Ok(Ok(Some(head))) => answer(&head, &render),
    };
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response)).await {
        let _ = stream.shutdown().await;
    }
}

/// Reads up to the blank line ending the request head; `None` if it exceeds the limit.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if head.windows(4).any(|window| window == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() >= HEAD_BYTES_MAX {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

/// The response to a request head.
fn answer(head: &[u8], render: &Render) -> Vec<u8> {
    let request_line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => response(200, CONTENT_TYPE, &render(), true),
        ("HEAD", "/metrics") => response(200, CONTENT_TYPE, &render(), false),
        (_, "/metrics") => response(405, "text/plain", "only GET is served\n", true),
        _ => response(404, "text/plain", "not found; metrics are at /metrics\n", true),
    }
}

fn response(status: u16, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{}\r\n",
        body.len(),
        if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
    )
    .into_bytes();
    if with_body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> Render {
        Arc::new(|| "up 1\n".to_string())
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn get_metrics_answers_the_rendered_body() {
        let get = text(answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &render()));
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("Content-Length: 5\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\nup 1\n"), "{get}");
        let head = text(answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &render()));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        assert!(text(answer(b"GET / HTTP/1.1\r\n\r\n", &render())).starts_with("HTTP/1.1 404"));
        let post = text(answer(b"POST /metrics HTTP/1.1\r\n\r\n", &render()));
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET"), "{post}");
        assert!(text(answer(b"\xff\xfe garbage", &render())).starts_with("HTTP/1.1 404"));
    }
}
