//! Curated scenarios: a tiny script language that drives tablet servers step by step on the
//! simulator's executor and prints one line per step, for insta snapshots.
//!
//! ```text
//! servers 2                       # first line; buckets of table 1 are then `b0`, `b1`, ...
//! scanner ttl_ms=1000 interval_ms=100 per_bucket=8 per_server=200 batch_max=1024
//! lead b0 on 1 [silently]         # next epoch for b0, led by server 1 (old leader not told)
//! fence b0                        # the shared log moves to the next epoch, no server told
//! put b0 10                       # upserts k000..k009
//! flush                           # runs until every leader has flushed
//! open s1 b0 size=20 [limit=5]    # opens scan `s1` on b0's leader
//! next s1 [size=20] [seq=5]        # next continuation (or an explicit call_seq_id)
//! retry s1                        # repeats the last request of s1
//! close s1
//! advance 1500                    # lets 1500 ms of virtual time pass
//! sessions                        # session counts of every server
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use kvtablet_core::engine::mem_engine::MemEngineFactory;
use kvtablet_core::env::{Env, LocalFs};
use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::ledger::Ledger;
use kvtablet_core::log::{LogConfig, LogRegistry};
use kvtablet_core::message::{
    BucketScanRequest, KvWrite, NodeId, Request, Response, ScanKvRequest, ScanKvResponse,
};
use kvtablet_core::mutant::Mutants;
use kvtablet_core::scan::value_record_batch::decode_value_batch;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::tablet_dirs::TablePath;
use kvtablet_core::tablet_server::{RequestLimits, TableConfig, TabletServer, TabletServerConfig};
use kvtablet_core::TableBucket;

use crate::client::{SCHEMA_ID, TABLE_ID};
use crate::executor::SimExecutor;
use crate::fs::SimFs;
use crate::network::{NetFaults, SimNetwork};
use crate::prng::{SimEntropy, Streams};
use crate::remote::{RemoteFaults, SimRemoteStorage};

const STEPS_MAX: u64 = 1_000_000;
const BUCKETS: i32 = 4;

struct ScriptScan {
    server: NodeId,
    id: Option<Vec<u8>>,
    next_seq: i32,
    size: i32,
    last_request: Option<ScanKvRequest>,
}

struct Script {
    exec: SimExecutor,
    servers: BTreeMap<NodeId, Arc<TabletServer>>,
    leaders: BTreeMap<TableBucket, (NodeId, u32)>,
    scans: BTreeMap<String, ScriptScan>,
    ledger: Ledger,
    lines: Vec<String>,
    /// The changelogs every server shares (so that one fence reaches every replica).
    logs: LogRegistry,
}

/// Runs a script and returns its trace, or the first error in it.
pub fn run_script(text: &str) -> Result<String, String> {
    let mut lines =
        text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty());
    let first = lines.next().ok_or("empty script")?;
    let server_count: u32 = first
        .strip_prefix("servers ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or("a script starts with `servers N`")?;
    let mut scanner = ScannerConfig::DEFAULT;
    let mut rest: Vec<&str> = lines.collect();
    if let Some(line) = rest.first().copied().filter(|l| l.starts_with("scanner ")) {
        for pair in line.split_whitespace().skip(1) {
            let (key, value) =
                pair.split_once('=').ok_or(format!("bad scanner setting {pair:?}"))?;
            let value: u64 = value.parse().map_err(|_| format!("bad number in {pair:?}"))?;
            match key {
                "ttl_ms" => scanner.ttl_ms = value,
                "interval_ms" => scanner.expiration_interval_ms = value,
                "per_bucket" => scanner.sessions_per_bucket_max = value as u32,
                "per_server" => scanner.sessions_per_server_max = value as u32,
                "batch_max" => scanner.batch_bytes_max = value as u32,
                _ => return Err(format!("unknown scanner setting {key:?}")),
            }
        }
        rest.remove(0);
    }
    scanner.validate()?;
    let mut script = Script::new(server_count, scanner);
    for line in rest {
        let outcome = script.step(line)?;
        script.lines.push(format!("{line:<32} -> {outcome}"));
    }
    script.shutdown();
    Ok(script.lines.join("\n"))
}

impl Script {
    fn new(server_count: u32, scanner: ScannerConfig) -> Script {
        let streams = Streams::new(1);
        let exec = SimExecutor::new(&streams);
        let net = SimNetwork::new(&exec, &streams, NetFaults::none());
        let remote = Arc::new(SimRemoteStorage::new(&exec, &streams, RemoteFaults::none()));
        let log_volume: Arc<dyn LocalFs> = Arc::new(SimFs::new());
        let logs = LogRegistry::new(log_volume, "cluster".to_string(), LogConfig::DEFAULT);
        let ledger = Ledger::new();
        let mut servers = BTreeMap::new();
        for node in 1..=server_count {
            let fs = Arc::new(SimFs::new());
            let env = Env {
                node_id: node,
                clock: exec.clock_for(node),
                executor: exec.executor_for(node),
                remote: remote.clone(),
                rpc: net.endpoint(node),
                fs: fs.clone(),
                entropy: Arc::new(SimEntropy::new(streams.stream(&format!("entropy-{node}")))),
                engines: Arc::new(MemEngineFactory::new(fs)),
                ledger: ledger.clone(),
                mutants: Mutants::NONE,
            };
            let config = TabletServerConfig {
                tables: vec![TableConfig {
                    table_id: TABLE_ID,
                    path: TablePath::new("script", "table"),
                    bucket_count: BUCKETS,
                    schema_ids: vec![SCHEMA_ID],
                    partial_updates: None,
                    log_ttl_ms: None,
                    partitioned: false,
                }],
                kv: KvTabletConfig::DEFAULT,
                limits: RequestLimits::DEFAULT,
                scanner,
                snapshots: None,
                tiering: None,
            };
            servers.insert(node, TabletServer::start(env, config, logs.clone()));
        }
        Script {
            exec,
            servers,
            leaders: BTreeMap::new(),
            scans: BTreeMap::new(),
            ledger,
            lines: Vec::new(),
            logs,
        }
    }

    fn request(&self, node: NodeId, request: Request) -> Result<Response, String> {
        let server = self.servers.get(&node).ok_or(format!("no server {node}"))?.clone();
        self.exec
            .block_on(
                node,
                "script-request",
                async move { server.handle_request(request).await },
                STEPS_MAX,
            )
            .map_err(|e| e.to_string())
    }

    fn step(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let option = |name: &str| -> Option<i64> {
            words
                .iter()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
        };
        match words.as_slice() {
            ["lead", bucket, "on", node, rest @ ..] => {
                // `silently`: the old leader is not told, as when its notice is lost.
                let silently = rest == ["silently"];
                let bucket = parse_bucket(bucket)?;
                let node: NodeId = node.parse().map_err(|_| format!("bad server {node:?}"))?;
                let (previous, epoch) = self.leaders.get(&bucket).copied().unwrap_or((0, 0));
                let epoch = epoch + 1;
                if previous != 0 && previous != node && !silently {
                    self.request(
                        previous,
                        Request::BecomeFollower { bucket, leader_epoch: epoch },
                    )?;
                }
                let response =
                    self.request(node, Request::BecomeLeader { bucket, leader_epoch: epoch })?;
                self.leaders.insert(bucket, (node, epoch));
                Ok(format!("epoch {epoch} {}", describe(&response)))
            }
            // As a new leader elsewhere fences the log before the old one hears of it.
            ["fence", bucket] => {
                let bucket = parse_bucket(bucket)?;
                let (leader, epoch) = self.leaders.get(&bucket).copied().unwrap_or((0, 0));
                let log = self.logs.open(bucket).map_err(|e| e.to_string())?;
                log.fence(epoch + 1).map_err(|e| e.to_string())?;
                self.leaders.insert(bucket, (leader, epoch + 1));
                Ok(format!("log at epoch {}", epoch + 1))
            }
            ["put", bucket, count] => {
                let bucket = parse_bucket(bucket)?;
                let count: u32 = count.parse().map_err(|_| format!("bad count {count:?}"))?;
                let writes = (0..count)
                    .map(|i| {
                        let key = format!("k{i:03}").into_bytes();
                        let value = script_value(&key, &format!("v{}", self.lines.len()));
                        KvWrite { key, value: Some(value) }
                    })
                    .collect();
                let leader = self.leader(bucket)?;
                Ok(describe(&self.request(
                    leader,
                    Request::PutKv { bucket, writes, writer: None, target_columns: None },
                )?))
            }
            ["flush"] => {
                let servers: Vec<Arc<TabletServer>> = self.servers.values().cloned().collect();
                let leaders: Vec<(TableBucket, NodeId)> =
                    self.leaders.iter().map(|(b, (n, _))| (*b, *n)).collect();
                let flushed = move || {
                    leaders.iter().all(|(bucket, node)| {
                        servers
                            .iter()
                            .find(|s| s.node_id() == *node)
                            .and_then(|s| s.leader_kv(*bucket))
                            .is_some_and(|kv| kv.flushed_log_offset() == kv.log().high_watermark())
                    })
                };
                self.exec.run_until(flushed, STEPS_MAX).map_err(|e| e.to_string())?;
                Ok("flushed".to_string())
            }
            ["open", name, bucket, ..] => {
                let bucket = parse_bucket(bucket)?;
                let size = option("size").unwrap_or(1 << 20) as i32;
                let leader = self.leader(bucket)?;
                let request = ScanKvRequest {
                    bucket_scan_req: Some(BucketScanRequest { bucket, limit: option("limit") }),
                    call_seq_id: Some(0),
                    batch_size_bytes: Some(size),
                    ..ScanKvRequest::default()
                };
                let response = self.scan(leader, request.clone())?;
                let scan = ScriptScan {
                    server: leader,
                    id: response.scanner_id.clone(),
                    next_seq: 1,
                    size,
                    last_request: Some(request),
                };
                self.scans.insert(name.to_string(), scan);
                Ok(describe_scan(&response))
            }
            ["next", name, ..] => {
                let scan = self.scans.get_mut(*name).ok_or(format!("no scan {name}"))?;
                if let Some(size) = option("size") {
                    scan.size = size as i32;
                }
                let call_seq_id = option("seq").map_or(scan.next_seq, |seq| seq as i32);
                let request = ScanKvRequest {
                    scanner_id: scan.id.clone(),
                    call_seq_id: Some(call_seq_id),
                    batch_size_bytes: Some(scan.size),
                    ..ScanKvRequest::default()
                };
                scan.next_seq = call_seq_id + 1;
                scan.last_request = Some(request.clone());
                let server = scan.server;
                Ok(describe_scan(&self.scan(server, request)?))
            }
            ["retry", name] => {
                let scan = self.scans.get(*name).ok_or(format!("no scan {name}"))?;
                let request = scan.last_request.clone().ok_or("nothing to retry")?;
                Ok(describe_scan(&self.scan(scan.server, request)?))
            }
            ["close", name] => {
                let scan = self.scans.get(*name).ok_or(format!("no scan {name}"))?;
                let request = ScanKvRequest {
                    scanner_id: scan.id.clone(),
                    close_scanner: Some(true),
                    batch_size_bytes: Some(scan.size),
                    ..ScanKvRequest::default()
                };
                Ok(describe_scan(&self.scan(scan.server, request)?))
            }
            ["advance", ms] => {
                let ms: u64 = ms.parse().map_err(|_| format!("bad duration {ms:?}"))?;
                self.exec.run_for(ms).map_err(|e| e.to_string())?;
                Ok(format!("now {} ms", self.exec.now_mono_ms()))
            }
            ["sessions"] => Ok(self
                .servers
                .values()
                .map(|s| format!("n{}={}", s.node_id(), s.scanners().counts().total))
                .collect::<Vec<_>>()
                .join(" ")),
            _ => Err(format!("unknown step {line:?}")),
        }
    }

    fn leader(&self, bucket: TableBucket) -> Result<NodeId, String> {
        self.leaders.get(&bucket).map(|(node, _)| *node).ok_or(format!("{bucket} has no leader"))
    }

    fn scan(&self, server: NodeId, request: ScanKvRequest) -> Result<ScanKvResponse, String> {
        match self.request(server, Request::ScanKv(request))? {
            Response::ScanKv(response) => Ok(response),
            other => Err(format!("ScanKv answered {other:?}")),
        }
    }

    fn shutdown(&mut self) {
        for server in self.servers.values() {
            self.exec.spawn(server.node_id(), "shutdown", server.shutdown().boxed());
        }
        let result = self.exec.run_to_completion(STEPS_MAX);
        let leaked = self.ledger.live();
        self.lines.push(format!(
            "shutdown -> {} ; leaked {}",
            if result.is_ok() { "clean" } else { "tasks left" },
            leaked.len()
        ));
    }
}

fn parse_bucket(word: &str) -> Result<TableBucket, String> {
    let id: i32 = word
        .strip_prefix('b')
        .and_then(|n| n.parse().ok())
        .ok_or(format!("bad bucket {word:?}"))?;
    Ok(TableBucket::new(TABLE_ID, id))
}

fn describe(response: &Response) -> String {
    match response {
        Response::Ok => "ok".to_string(),
        Response::PutKv { base_offset, end_offset, .. } => {
            format!("offsets [{base_offset}, {end_offset})")
        }
        Response::Error(error) => format!("error {:?}", error.code),
        other => format!("{other:?}"),
    }
}

/// A response without the random scanner id: rows as their keys.
fn describe_scan(response: &ScanKvResponse) -> String {
    if let Some(error) = &response.error {
        return format!("error {:?}: {}", error.code, error.message);
    }
    let keys: Vec<String> = response
        .records
        .as_deref()
        .map(|records| decode_value_batch(records).unwrap_or_default())
        .unwrap_or_default()
        .iter()
        .filter_map(|value| crate::client::key_of_value(value))
        .map(|key| String::from_utf8_lossy(&key).into_owned())
        .collect();
    let mut text =
        format!("rows [{}] more {:?}", keys.join(","), response.has_more_results.unwrap_or(false));
    if let Some(log_offset) = response.log_offset {
        text.push_str(&format!(" log_offset {log_offset}"));
    }
    if response.scanner_id.is_none() {
        text.push_str(" (no session)");
    }
    text
}

/// A value of the scripts' table, which has one value column and takes no partial updates:
/// the schema id, the key (scans return values only), `|` and a tag. The curated scripts'
/// page sizes are set against this length.
fn script_value(key: &[u8], tag: &str) -> Vec<u8> {
    let mut value = SCHEMA_ID.to_le_bytes().to_vec();
    value.extend_from_slice(key);
    value.push(b'|');
    value.extend_from_slice(tag.as_bytes());
    value
}
