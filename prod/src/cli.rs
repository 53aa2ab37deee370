//! The `kvtablet` command line: `serve`, plus hidden commands that the durability tests drive.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kvtablet_core::env::RpcError;
use kvtablet_core::message::{KvWrite, Request, Response};
use kvtablet_core::TableBucket;
use kvtablet_prod::config::{keys_help, ConfigError, ServeConfig, Setting};
use kvtablet_prod::node::{Node, NodeConfig, NodeError};
use kvtablet_prod::served_node::{ServedNode, ServedNodeError};
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, SignalKind};

/// The primary-key side of an Apache Fluss tablet server.
#[derive(Debug, Parser)]
#[command(name = "kvtablet", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the tablet server until SIGINT or SIGTERM.
    #[command(after_help = keys_help())]
    Serve(ServeArgs),
    /// Scans one bucket of a table through a server (a full ScanKv) and prints every row as
    /// one JSON object per line, keyed by column name.
    Scan {
        /// `host:port` of the server.
        #[arg(long)]
        server: String,
        #[arg(long)]
        database: String,
        #[arg(long)]
        table: String,
        /// The partition of a partitioned table: its name, the values joined by `$`.
        #[arg(long)]
        partition: Option<String>,
        #[arg(long)]
        bucket: i32,
        /// The page size asked of the server.
        #[arg(long, default_value_t = kvtablet_prod::scan_command::ScanCommandOptions::DEFAULT.batch_size_bytes)]
        batch_size_bytes: i32,
    },
    /// Test support: writes `count` keys one durable request at a time, printing
    /// `ack <i> <base_offset>` after each acknowledgement.
    #[command(hide = true)]
    WriteStream {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        count: u64,
    },
    /// Test support: prints `row <bucket> <value>` for every row of every bucket and, with
    /// `--lookup-count N`, `key <key> <value>` or `missing <key>` for the keys `write-stream`
    /// writes first. Bytes are printed with `escape_ascii`.
    #[command(hide = true)]
    Dump {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        lookup_count: Option<u64>,
    },
}

/// `kvtablet serve`: each flag stands for one configuration key and overrides the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of configuration keys (listed below).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its catalog, changelogs, engines and, unless `remote.data.dir` is
    /// set, remote objects (`data.dir`) [default: ./kvtablet-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where to serve the Fluss wire protocol, coordinator and tablet server on one port
    /// (`bind.listeners`) [default: 127.0.0.1:9123].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where to serve Prometheus metrics (GET /metrics), or `off` (`metrics.listen`)
    /// [default: 127.0.0.1:9250].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Sets any configuration key, as the file would; may be repeated.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ServeArgs {
    /// The defaults, overridden by the file, then by `-D`, then by the flags.
    pub fn load(&self) -> Result<ServeConfig, ConfigError> {
        let mut settings = self
            .set
            .iter()
            .map(|argument| Setting::parse_assignment(argument))
            .collect::<Result<Vec<_>, _>>()?;
        settings.extend(self.data_dir.as_deref().map(Setting::data_dir));
        settings.extend(self.listen.clone().map(Setting::listen));
        settings.extend(self.metrics_listen.clone().map(Setting::metrics_listen));
        ServeConfig::load(self.config.as_deref(), &settings)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("request failed: {0}")]
    Rpc(#[from] RpcError),
    #[error("{request} answered {response:?}")]
    Unexpected { request: &'static str, response: Box<Response> },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
    #[error("cannot wait for signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Served(#[from] ServedNodeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a request handler panicked; the node stopped (see the error log)")]
    HandlerPanicked,
    #[error(transparent)]
    Scan(#[from] kvtablet_prod::scan_command::ScanCommandError),
}

/// The key `write-stream` writes `index`-th.
pub fn stream_key(index: u64) -> Vec<u8> {
    format!("k{index:08}").into_bytes()
}

/// The value `write-stream` writes under `stream_key(index)`: schema id 1 (little-endian
/// `i16`), then the payload.
pub fn stream_value(index: u64) -> Vec<u8> {
    let mut value = 1i16.to_le_bytes().to_vec();
    value.extend_from_slice(format!("v{index}").as_bytes());
    value
}

/// Spreads keys over the hosted buckets with a stable hash, as a client would.
fn bucket_for_key(key: &[u8], buckets: &[TableBucket]) -> Option<TableBucket> {
    let bucket_count = u32::try_from(buckets.len()).ok().filter(|count| *count > 0)?;
    let index = mix32(crc32c::crc32c(key)) % bucket_count;
    buckets.get(usize::try_from(index).ok()?).copied()
}

/// MurmurHash3's finalizer. CRC is linear, so the low bits of the CRCs of keys that differ in
/// a few characters take few distinct values; this spreads every input bit over every output bit.
fn mix32(mut hash: u32) -> u32 {
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

/// Attempts per request: a freshly started server may still be restoring a bucket and answer
/// with a retriable error for a moment.
const REQUEST_ATTEMPTS: u32 = 100;
const RETRY_BACKOFF_MS: u64 = 100;

/// Sends `request`, repeating it while the answer says a retry may help. Repeating is safe for
/// every request sent here: upserts of the same value and reads.
async fn request_with_retry(node: &Node, request: Request) -> Result<Response, CliError> {
    let mut attempt = 1;
    loop {
        let outcome = node.request(request.clone()).await;
        let retriable = match &outcome {
            Ok(Response::Error(error)) => error.is_retriable(),
            Ok(_) => false,
            Err(error) => error.is_retriable(),
        };
        if !retriable || attempt >= REQUEST_ATTEMPTS {
            return Ok(outcome?);
        }
        tracing::debug!(kind = request.kind(), attempt, ?outcome, "retrying");
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
    }
}

/// Opens the catalog, hosts and leads the buckets of every table in it, and serves the Fluss
/// protocol and the metrics endpoint until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs, runtime: Handle) -> Result<(), CliError> {
    let config = args.load()?;
    // Signal handlers go in before the node starts so that an early SIGTERM is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let mut served = ServedNode::start_with(&config, runtime).await?;
    let panicked = tokio::select! {
        _ = terminate.recv() => { tracing::info!("SIGTERM received, shutting down"); false }
        _ = interrupt.recv() => { tracing::info!("SIGINT received, shutting down"); false }
        () = served.failed() => {
            tracing::error!("a request handler panicked; the node shuts down");
            true
        }
    };
    served.stop().await;
    if panicked {
        return Err(CliError::HandlerPanicked);
    }
    Ok(())
}

pub async fn write_stream(data_dir: PathBuf, count: u64, runtime: Handle) -> Result<(), CliError> {
    let mut node = Node::start(NodeConfig::new(data_dir), runtime).await?;
    let outcome = write_stream_on(&node, count).await;
    node.shutdown().await;
    outcome
}

async fn write_stream_on(node: &Node, count: u64) -> Result<(), CliError> {
    let buckets = node.config().buckets.clone();
    let mut stdout = std::io::stdout().lock();
    for index in 0..count {
        let key = stream_key(index);
        let Some(bucket) = bucket_for_key(&key, &buckets) else {
            // No buckets configured: nothing can be written.
            return Ok(());
        };
        let writes = vec![KvWrite { key, value: Some(stream_value(index)) }];
        match request_with_retry(
            node,
            Request::PutKv { bucket, writes, writer: None, target_columns: None },
        )
        .await?
        {
            Response::PutKv { base_offset, .. } => {
                // Flushed line by line: a reader that kills this process right after reading an
                // ack must have seen every ack before it.
                writeln!(stdout, "ack {index} {base_offset}")?;
                stdout.flush()?;
            }
            response => {
                return Err(CliError::Unexpected {
                    request: "put_kv",
                    response: Box::new(response),
                })
            }
        }
    }
    Ok(())
}

pub async fn dump(
    data_dir: PathBuf,
    lookup_count: Option<u64>,
    runtime: Handle,
) -> Result<(), CliError> {
    let mut node = Node::start(NodeConfig::new(data_dir), runtime).await?;
    let outcome = dump_on(&node, lookup_count).await;
    node.shutdown().await;
    outcome
}

async fn dump_on(node: &Node, lookup_count: Option<u64>) -> Result<(), CliError> {
    let buckets = node.config().buckets.clone();
    let mut stdout = std::io::stdout().lock();
    for bucket in &buckets {
        let request = Request::LimitScan { bucket: *bucket, limit: u32::MAX };
        match request_with_retry(node, request).await? {
            Response::Rows { values, .. } => {
                for value in values {
                    writeln!(stdout, "row {} {}", bucket.dir_name(), value.escape_ascii())?;
                }
            }
            response => {
                return Err(CliError::Unexpected {
                    request: "limit_scan",
                    response: Box::new(response),
                })
            }
        }
    }
    for index in 0..lookup_count.unwrap_or(0) {
        let key = stream_key(index);
        let Some(bucket) = bucket_for_key(&key, &buckets) else {
            break;
        };
        let request = Request::Lookup { bucket, keys: vec![key.clone()] };
        match request_with_retry(node, request).await? {
            Response::Lookup { values, .. } => match values.into_iter().next().flatten() {
                Some(value) => {
                    writeln!(stdout, "key {} {}", key.escape_ascii(), value.escape_ascii())?
                }
                None => writeln!(stdout, "missing {}", key.escape_ascii())?,
            },
            response => {
                return Err(CliError::Unexpected {
                    request: "lookup",
                    response: Box::new(response),
                })
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn stream_records_have_the_documented_shape() {
        assert_eq!(stream_key(7), b"k00000007");
        assert_eq!(stream_value(7), b"\x01\x00v7");
    }

    #[test]
    fn keys_spread_over_every_bucket() {
        let buckets: Vec<TableBucket> = (0..4).map(|id| TableBucket::new(1, id)).collect();
        let mut hits = [0u32; 4];
        // Few keys on purpose: a poor hash leaves buckets empty at this size.
        for index in 0..40 {
            let bucket = bucket_for_key(&stream_key(index), &buckets).expect("a bucket");
            hits[usize::try_from(bucket.bucket_id).expect("small id")] += 1;
        }
        assert!(hits.iter().all(|count| *count > 0), "{hits:?}");
        assert_eq!(bucket_for_key(b"k", &[]), None);
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["kvtablet", "serve"]).expect("serve");
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.load().expect("defaults"), ServeConfig::default());
        let cli = Cli::try_parse_from([
            "kvtablet",
            "serve",
            "--data-dir",
            "d",
            "--listen",
            "127.0.0.1:5555",
            "--metrics-listen",
            "off",
            "-D",
            "kv.scanner.max-per-bucket=2",
            "-Dnet.max-connections=3",
        ])
        .expect("serve with flags");
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        let config = args.load().expect("valid");
        assert_eq!(config.data_dir, std::path::Path::new("d"));
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 5555)));
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.scanner.sessions_per_bucket_max, 2);
        assert_eq!(config.wire.max_connections, 3);
        let cli =
            Cli::try_parse_from(["kvtablet", "serve", "--listen", "nowhere"]).expect("parses");
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert!(matches!(args.load(), Err(ConfigError::BadValue { .. })));
        let cli =
            Cli::try_parse_from(["kvtablet", "write-stream", "--data-dir", "d", "--count", "3"])
                .expect("write-stream");
        assert!(matches!(cli.command, Command::WriteStream { count: 3, .. }));
        let cli =
            Cli::try_parse_from(["kvtablet", "dump", "--data-dir", "d", "--lookup-count", "2"])
                .expect("dump");
        assert!(matches!(cli.command, Command::Dump { lookup_count: Some(2), .. }));
    }
}
