//! Every configuration key of `kvtablet serve`: its name, default, meaning and how a value is
//! applied. One table, so that the help, the defaults and the unknown-key check cannot disagree.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::config::remote::{
    parse_bool, parse_endpoint, RemoteDataDir, Secret, S3_PART_BYTES_MAX, S3_PART_BYTES_MIN,
    S3_RETRY_INTERVAL_MS_MAX, S3_RETRY_LIMIT_MAX,
};
use kvtablet_core::snapshot::snapshot_store::NUM_RETAINED_MAX;

use crate::config::units::{parse_duration_ms, parse_size_bytes};
use crate::config::ServeConfig;
use crate::wire::server::MIN_MAX_FRAME_SIZE;

/// One key. `apply` parses a value and sets it, or says why the value is wrong.
pub struct ConfigKey {
    pub name: &'static str,
    /// The default, written as a user would write it; parsing it gives
    /// [`ServeConfig::default`] (a test checks).
    pub default: &'static str,
    pub doc: &'static str,
    pub apply: fn(&mut ServeConfig, &str) -> Result<(), String>,
}

/// `bind.listeners`, `--listen`: where clients connect.
pub const BIND_LISTENERS: &str = "bind.listeners";
/// `data.dir`, `--data-dir`.
pub const DATA_DIR: &str = "data.dir";
/// `metrics.listen`, `--metrics-listen`.
pub const METRICS_LISTEN: &str = "metrics.listen";
/// `remote.data.dir`.
pub const REMOTE_DATA_DIR: &str = "remote.data.dir";
/// `s3.secret-key`.
pub const S3_SECRET_KEY: &str = "s3.secret-key";

/// Keys whose values are never printed, not even in the error about a bad one.
pub const SECRET_KEYS: &[&str] = &[S3_SECRET_KEY];

/// `kv.rocksdb.writebuffer.size` bounds: RocksDB's own floor, and a memtable that still leaves
/// memory for more than a few buckets.
const WRITE_BUFFER_BYTES_MIN: usize = 64 * 1024;
const WRITE_BUFFER_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// `log.segment.file-size` bounds.
const SEGMENT_BYTES_MIN: u64 = 1024;
const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: BIND_LISTENERS,
        default: "127.0.0.1:9123",
        doc: "The Fluss wire-protocol address, IP:PORT or FLUSS://IP:PORT (one listener; \
              `localhost` means 127.0.0.1; port 0 picks a free one). Flag: --listen.",
        apply: |config, value| {
            config.listen = parse_listener(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: DATA_DIR,
        default: "./kvtablet-data",
        doc: "Where the node keeps its catalog, changelogs, engines and (unless \
              remote.data.dir is set) remote objects. \
              Flag: --data-dir.",
        apply: |config, value| {
            if value.is_empty() {
                return Err("the data directory may not be empty".to_string());
            }
            config.data_dir = PathBuf::from(value);
            Ok(())
        },
    },
    ConfigKey {
        name: METRICS_LISTEN,
        default: "127.0.0.1:9250",
        doc: "The Prometheus endpoint (GET /metrics), IP:PORT, or `off`. If the default \
              address is taken the node warns and runs without it; an address that was set \
              must bind. Flag: --metrics-listen.",
        apply: |config, value| {
            config.metrics_listen = if value.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_address(value)?)
            };
            Ok(())
        },
    },
    ConfigKey {
        name: REMOTE_DATA_DIR,
        default: "",
        doc: "Where KV snapshots are uploaded: empty for the directory `remote` inside \
              data.dir, a local directory (a path or file:///path), or s3://bucket/prefix for \
              S3 or an S3-compatible server (configured by the s3.* keys).",
        apply: |config, value| {
            config.remote_data_dir = RemoteDataDir::parse(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.endpoint",
        default: "",
        doc: "The S3 endpoint, http(s)://host[:port]; empty is AWS's for s3.region (or \
              AWS_ENDPOINT). http:// is allowed, for a local S3-compatible server.",
        apply: |config, value| {
            config.s3.endpoint = parse_endpoint(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.region",
        default: "",
        doc: "The S3 region; empty is AWS_REGION, else us-east-1.",
        apply: |config, value| {
            config.s3.region = non_empty(value);
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.access-key",
        default: "",
        doc: "The S3 access key id; empty is AWS_ACCESS_KEY_ID or the instance's credentials. \
              Set together with s3.secret-key.",
        apply: |config, value| {
            config.s3.access_key = non_empty(value);
            Ok(())
        },
    },
    ConfigKey {
        name: S3_SECRET_KEY,
        default: "",
        doc: "The S3 secret access key (never printed); empty is AWS_SECRET_ACCESS_KEY or the \
              instance's credentials.",
        apply: |config, value| {
            config.s3.secret_key = non_empty(value).map(Secret::new);
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.path.style.access",
        default: "false",
        doc: "true: address the bucket in the path (endpoint/bucket/key) rather than the host \
              name, as most S3-compatible servers want.",
        apply: |config, value| {
            config.s3.path_style_access = parse_bool(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.multipart.threshold",
        default: "128 mb",
        doc: "Objects larger than this are uploaded in parts (multipart upload); at least \
              s3.multipart.size.",
        apply: |config, value| {
            config.s3.multipart_threshold_bytes = part_size(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.multipart.size",
        default: "64 mb",
        doc: "The size of each part of a multipart upload, between 5 mb and 5 gb.",
        apply: |config, value| {
            config.s3.multipart_part_bytes = part_size(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.retry.limit",
        default: "7",
        doc: "Retries of one S3 request after a transient failure (a 5xx, throttling, a \
              timeout or a connection error), with exponential backoff; 0 to 20.",
        apply: |config, value| {
            let limit = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|limit| *limit <= S3_RETRY_LIMIT_MAX)
                .ok_or_else(|| format!("expected a whole number from 0 to {S3_RETRY_LIMIT_MAX}"))?;
            config.s3.retry_limit = limit;
            Ok(())
        },
    },
    ConfigKey {
        name: "s3.retry.interval",
        default: "500 ms",
        doc: "The backoff before the first retry of an S3 request, doubled at each retry \
              (at most 1 min).",
        apply: |config, value| {
            let ms = positive_duration_ms(value)?;
            if ms > S3_RETRY_INTERVAL_MS_MAX {
                return Err("must be at most 1 min".to_string());
            }
            config.s3.retry_interval_ms = ms;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.scanner.ttl",
        default: "10 min",
        doc: "A scan session idle for longer than this is evicted.",
        apply: |config, value| {
            config.scanner.ttl_ms = positive_duration_ms(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.scanner.expiration-interval",
        default: "30 s",
        doc: "How often idle scan sessions are looked for.",
        apply: |config, value| {
            config.scanner.expiration_interval_ms = positive_duration_ms(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.scanner.max-per-bucket",
        default: "8",
        doc: "Scan sessions open at once on one bucket.",
        apply: |config, value| {
            config.scanner.sessions_per_bucket_max = positive_u32(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.scanner.max-per-server",
        default: "200",
        doc: "Scan sessions open at once on this server.",
        apply: |config, value| {
            config.scanner.sessions_per_server_max = positive_u32(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.pre-write-buffer.max-size",
        default: "64 mb",
        doc: "Per led bucket, the bytes of acknowledged writes not yet flushed into the engine; \
              past it puts are refused with STORAGE_BACKPRESSURE (retriable) until the flush \
              catches up.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            if bytes == 0 {
                return Err("must be at least 1 byte".to_string());
            }
            config.pre_write_buffer_bytes_max = bytes;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.snapshot.interval",
        default: "10 min",
        doc: "How often the leader of each bucket takes an incremental KV snapshot (skipped \
              when nothing was flushed since the last one) and uploads it to the remote data \
              directory (remote.data.dir). Snapshots cannot be switched off: \
              0 and `off` are refused.",
        apply: |config, value| {
            config.snapshot_interval_ms = positive_duration_ms(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.snapshot.num-retained",
        default: "2",
        doc: "Completed KV snapshots kept per bucket (1 to 959, which leaves room for leased \
              ones); the files of older ones are deleted from the remote data directory unless \
              a kept or leased snapshot still uses them.",
        apply: |config, value| {
            let retained = positive_u32(value)?;
            if retained as usize > NUM_RETAINED_MAX {
                return Err(format!("must be at most {NUM_RETAINED_MAX}"));
            }
            config.snapshot_num_retained = retained;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.snapshot.lease.expiration-check-interval",
        default: "10 min",
        doc: "How often the coordinator drops the KV snapshot leases whose expiration has \
              passed, and deletes the snapshots only they kept (a lease is valid through its \
              expiration millisecond).",
        apply: |config, value| {
            config.lease_expiration_check_interval_ms = positive_duration_ms(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.recover.remote-log.prefetch-num",
        default: "4",
        doc: "When a bucket's engine is recovered from a KV snapshot, the tiered changelog \
              segments downloaded (or downloading) ahead of the replay, at most (1 to 64; each \
              may hold a whole segment on local disk). At least \
              kv.recover.remote-log.download-threads.",
        apply: |config, value| {
            config.recovery_fetcher.prefetch_num = whole_number(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.recover.remote-log.download-threads",
        default: "3",
        doc: "When a bucket's engine is recovered from a KV snapshot, the downloads running at \
              once, at most: of the snapshot's files, then of the tiered changelog segments \
              (1 to 32, and at most kv.recover.remote-log.prefetch-num). At most this many \
              files' bytes are held in memory at once.",
        apply: |config, value| {
            config.recovery_fetcher.download_threads = whole_number(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "log.segment.file-size",
        default: "1 mb",
        doc: "A changelog segment is rolled before it grows past this size (between 1 kb and \
              1 gb). Only closed segments are tiered to the remote data directory, and a read \
              below the local log start downloads one whole segment, so the default is far \
              below Fluss's 1 gb.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&bytes) {
                return Err("must be between 1 kb and 1 gb".to_string());
            }
            config.segment_bytes_max = bytes;
            Ok(())
        },
    },
    ConfigKey {
        name: "remote.log.task-interval-duration",
        default: "1 min",
        doc: "How often the leader of each bucket uploads its closed changelog segments to \
              the remote data directory, records them in the bucket's remote-log manifest, and \
              then deletes local segments that are tiered, below the latest KV snapshot's log \
              offset and beyond `table.log.tiered.local-segments`. Positive.",
        apply: |config, value| {
            config.tiering_interval_ms = positive_duration_ms(value)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "table.log.tiered.local-segments",
        default: "2",
        doc: "Closed changelog segments each bucket keeps on local disk once they are tiered \
              (at least 1). Older ones are read from the remote data directory.",
        apply: |config, value| {
            config.local_retention.segments_kept = positive_u32(value)? as usize;
            Ok(())
        },
    },
    ConfigKey {
        name: "table.log.tiered.local-retention-time",
        default: "off",
        doc: "A tiered closed changelog segment whose newest batch is older than this is \
              deleted from local disk even if `table.log.tiered.local-segments` would keep it \
              (a positive duration, or off). The latest KV snapshot's log offset and the \
              remote end still bound what is deleted.",
        apply: |config, value| {
            config.local_retention.age_ms_max = off_or(value, positive_duration_ms)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "table.log.tiered.local-retention-size",
        default: "off",
        doc: "The oldest tiered closed changelog segments of a bucket are deleted from local \
              disk while its local changelog (the active segment included) is larger than \
              this (a size of at least 1 kb, or off). The active segment, and what the latest \
              KV snapshot or the remote end still needs, are never deleted, so a bucket can \
              stay above the bound until they move.",
        apply: |config, value| {
            config.local_retention.size_bytes_max = off_or(value, |value| {
                Some(parse_size_bytes(value)?)
                    .filter(|bytes| *bytes >= 1024)
                    .ok_or_else(|| "must be at least 1 kb".to_string())
            })?;
            Ok(())
        },
    },
    ConfigKey {
        name: "table.log.ttl",
        default: "7 d",
        doc: "How long the remote tier keeps a tiered changelog segment: one whose newest \
              batch is older than this is removed from the remote-log manifest and deleted \
              (a positive duration, or off: kept forever). A table's own `table.log.ttl` \
              property wins. A segment that a KV recovery from the oldest kept (retained or \
              leased) KV snapshot would replay is never deleted, whatever its age.",
        apply: |config, value| {
            config.remote_log_ttl_ms = off_or(value, positive_duration_ms)?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.rocksdb.writebuffer.size",
        default: "64 mb",
        doc: "Each bucket's RocksDB memtable (Fluss's key and default), between 64 kb and 1 gb. \
              RocksDB also reserves about 1.1 times this on disk for each open bucket's \
              write-ahead log.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            config.engine_write_buffer_bytes = usize::try_from(bytes)
                .ok()
                .filter(|bytes| (WRITE_BUFFER_BYTES_MIN..=WRITE_BUFFER_BYTES_MAX).contains(bytes))
                .ok_or_else(|| "must be between 64 kb and 1 gb".to_string())?;
            Ok(())
        },
    },
    ConfigKey {
        name: "kv.scanner.max-batch-size",
        default: "10 mb",
        doc: "The largest page a scan returns, whatever the client asks for.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            // The wire carries the requested size as an i32.
            config.scanner.batch_bytes_max = u32::try_from(bytes)
                .ok()
                .filter(|bytes| (1..=i32::MAX as u32).contains(bytes))
                .ok_or_else(|| format!("must be between 1 byte and {} bytes", i32::MAX))?;
            Ok(())
        },
    },
    ConfigKey {
        name: "net.max-frame-size",
        default: "100 mb",
        doc: "The largest request or response frame; a larger request closes its connection.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            config.wire.max_frame_size = usize::try_from(bytes)
                .ok()
                .filter(|bytes| (MIN_MAX_FRAME_SIZE..=i32::MAX as usize).contains(bytes))
                .ok_or_else(|| {
                    format!("must be between {MIN_MAX_FRAME_SIZE} bytes and {} bytes", i32::MAX)
                })?;
            Ok(())
        },
    },
    ConfigKey {
        name: "net.max-connections",
        default: "1024",
        doc: "Client connections open at once; one more gets an error that names this limit \
              (NETWORK_EXCEPTION) and is closed.",
        apply: |config, value| {
            config.wire.max_connections = positive_u32(value)? as usize;
            Ok(())
        },
    },
    ConfigKey {
        name: "net.max-in-flight-per-connection",
        default: "64",
        doc: "Requests of one connection handled at once; at the limit the connection is not \
              read until one is answered.",
        apply: |config, value| {
            config.wire.max_in_flight_per_connection = positive_u32(value)? as usize;
            Ok(())
        },
    },
    ConfigKey {
        name: "net.max-request-bytes-in-flight",
        default: "256 mb",
        doc: "Request bytes the node holds at once over all connections, from before a body is \
              read until it is answered; a connection waits for its share before reading a \
              body. Frames above 64 KiB share three quarters of it (which must hold the \
              largest frame); the rest is kept for small requests.",
        apply: |config, value| {
            let bytes = parse_size_bytes(value)?;
            config.wire.request_bytes_in_flight_max = usize::try_from(bytes)
                .ok()
                .filter(|bytes| *bytes >= MIN_MAX_FRAME_SIZE)
                .ok_or_else(|| format!("must be at least {MIN_MAX_FRAME_SIZE} bytes"))?;
            Ok(())
        },
    },
    ConfigKey {
        name: "net.frame-read-timeout",
        default: "30 s",
        doc: "How long a request frame may take to arrive once it has started (and its body \
              is allowed in); a slower one closes its connection.",
        apply: |config, value| {
            config.wire.frame_read_timeout =
                std::time::Duration::from_millis(positive_duration_ms(value)?);
            Ok(())
        },
    },
    ConfigKey {
        name: "net.max-idle-time",
        default: "10 min",
        doc: "A connection with no request in flight that sends nothing for this long is \
              closed (Fluss: netty.connection.max-idle-time).",
        apply: |config, value| {
            config.wire.idle_timeout =
                std::time::Duration::from_millis(positive_duration_ms(value)?);
            Ok(())
        },
    },
    ConfigKey {
        name: "net.shutdown-grace",
        default: "10 s",
        doc: "On SIGINT or SIGTERM, how long in-flight requests have to be answered.",
        apply: |config, value| {
            config.wire.shutdown_grace =
                std::time::Duration::from_millis(parse_duration_ms(value)?);
            Ok(())
        },
    },
];

/// The key named `name`.
pub fn find(name: &str) -> Option<&'static ConfigKey> {
    KEYS.iter().find(|key| key.name == name)
}

fn positive_duration_ms(value: &str) -> Result<u64, String> {
    match parse_duration_ms(value)? {
        0 => Err("must be longer than 0 ms".to_string()),
        ms => Ok(ms),
    }
}

/// `off` (any case) is `None`, anything else is parsed by `parse`.
fn off_or(value: &str, parse: impl Fn(&str) -> Result<u64, String>) -> Result<Option<u64>, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// The empty string is unset.
fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// An S3 part size (or a threshold, which must allow one part).
fn part_size(value: &str) -> Result<u64, String> {
    Some(parse_size_bytes(value)?)
        .filter(|bytes| (S3_PART_BYTES_MIN..=S3_PART_BYTES_MAX).contains(bytes))
        .ok_or_else(|| "must be between 5 mb and 5 gb".to_string())
}

/// A whole number, bounded by whoever uses it.
fn whole_number(value: &str) -> Result<usize, String> {
    value.trim().parse::<usize>().map_err(|_| "expected a whole number".to_string())
}

fn positive_u32(value: &str) -> Result<u32, String> {
    let number = value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("expected a whole number between 1 and {}", u32::MAX))?;
    if number == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(number)
}

/// `IP:PORT` or `[IPv6]:PORT`, with `localhost` for 127.0.0.1.
fn parse_address(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    if let Some(port) = value.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| format!("{port:?} is not a port"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    value.parse::<SocketAddr>().map_err(|_| "expected IP:PORT, such as 127.0.0.1:9123".to_string())
}

/// One listener, optionally named as Fluss names them (`FLUSS://IP:PORT`).
fn parse_listener(value: &str) -> Result<SocketAddr, String> {
    if value.contains(',') {
        return Err("only one listener is supported".to_string());
    }
    let address = match value.trim().split_once("://") {
        Some((name, address)) if !name.is_empty() => address,
        Some(_) => return Err("a listener name comes before `://`".to_string()),
        None => value,
    };
    parse_address(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_take_the_fluss_form_and_the_plain_one() {
        let plain = parse_listener("127.0.0.1:9123").expect("plain");
        assert_eq!(plain, SocketAddr::from(([127, 0, 0, 1], 9123)));
        assert_eq!(parse_listener("FLUSS://127.0.0.1:9123"), Ok(plain));
        assert_eq!(parse_listener("FLUSS://localhost:9123"), Ok(plain));
        assert_eq!(parse_listener("[::1]:0"), Ok("[::1]:0".parse().expect("v6")));
        for bad in ["", "9123", "FLUSS://", "://1.2.3.4:5", "a:1,b:2", "host.example:9123"] {
            assert!(parse_listener(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn key_names_are_unique() {
        for (index, key) in KEYS.iter().enumerate() {
            assert!(KEYS[..index].iter().all(|other| other.name != key.name), "{}", key.name);
        }
    }
}
