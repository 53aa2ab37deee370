//! The configuration of `kvtablet serve`: Fluss-style keys (`bind.listeners`,
//! `kv.scanner.ttl`, ...) read from a TOML file and then from the command line, which wins.
//!
//! The file may nest the keys (`[kv.scanner]` then `ttl = "5 min"`) or write them dotted
//! (`kv.scanner.ttl = "5 min"`); a value is a string or an integer. An unknown key, a
//! malformed value or one that fails validation is a [`ConfigError`] naming the key, the value
//! and where it came from. Every key is listed in [`config_key::KEYS`], which the help is
//! written from.

pub mod config_error;
pub mod config_key;
pub mod remote;
pub mod units;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kvtablet_core::kv::KvTabletConfig;
use kvtablet_core::lease::EXPIRATION_CHECK_INTERVAL_MS_DEFAULT;
use kvtablet_core::log::{LocalRetention, LogConfig};
use kvtablet_core::recovery::FetcherConfig;
use kvtablet_core::scan::ScannerConfig;
use kvtablet_core::snapshot::snapshot_store::NUM_RETAINED_DEFAULT;
use kvtablet_core::snapshot::SNAPSHOT_INTERVAL_MS_DEFAULT;
use kvtablet_core::tiering::TIERING_INTERVAL_MS_DEFAULT;

pub use self::config_error::ConfigError;
use self::config_key::{BIND_LISTENERS, DATA_DIR, KEYS, METRICS_LISTEN, SECRET_KEYS};
use self::remote::{RemoteDataDir, S3Config};
use crate::rocks_engine::WRITE_BUFFER_BYTES_DEFAULT;
use crate::wire::WireConfig;

/// Fluss's `kv.snapshot.num-retained` default, as a config value.
const SNAPSHOT_NUM_RETAINED_DEFAULT: u32 = NUM_RETAINED_DEFAULT as u32;

/// Everything `kvtablet serve` is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// `data.dir`.
    pub data_dir: PathBuf,
    /// `bind.listeners`: the Fluss wire protocol.
    pub listen: SocketAddr,
    /// `metrics.listen`: the Prometheus endpoint; `None` is `off`.
    pub metrics_listen: Option<SocketAddr>,
    /// `kv.scanner.*`.
    pub scanner: ScannerConfig,
    /// `kv.pre-write-buffer.max-size`: per led bucket, the bytes of acknowledged values not yet
    /// flushed into the engine before puts are refused with STORAGE_BACKPRESSURE.
    pub pre_write_buffer_bytes_max: u64,
    /// `kv.snapshot.interval`: how often each led bucket takes a KV snapshot (positive).
    pub snapshot_interval_ms: u64,
    /// `kv.snapshot.num-retained`: completed snapshots kept per bucket (at least 1).
    pub snapshot_num_retained: u32,
    /// `kv.snapshot.lease.expiration-check-interval`.
    pub lease_expiration_check_interval_ms: u64,
    /// `kv.recover.remote-log.prefetch-num` and `kv.recover.remote-log.download-threads`:
    /// how a recovery from KV snapshots downloads the snapshot's files and the tiered
    /// changelog (validated against each other at start-up).
    pub recovery_fetcher: FetcherConfig,
    /// `kv.rocksdb.writebuffer.size`: each bucket's RocksDB memtable, in bytes.
    pub engine_write_buffer_bytes: usize,
    /// `log.segment.file-size`: a changelog segment is rolled before it grows past this.
    pub segment_bytes_max: u64,
    /// `remote.log.task-interval-duration`: how often each leader tiers its closed segments
    /// and runs local retention.
    pub tiering_interval_ms: u64,
    /// `table.log.tiered.local-segments`, `-retention-time` and `-retention-size`: what each
    /// bucket keeps locally once tiered.
    pub local_retention: LocalRetention,
    /// `table.log.ttl`: how long the remote tier keeps a changelog segment, for tables that do
    /// not set their own (`None`: forever).
    pub remote_log_ttl_ms: Option<u64>,
    /// `net.*`.
    pub wire: WireConfig,
    /// `remote.data.dir`: where KV snapshots go.
    pub remote_data_dir: RemoteDataDir,
    /// `s3.*`: how an `s3://` remote data directory is reached.
    pub s3: S3Config,
    /// The keys set by the file or the command line rather than left at their default.
    explicit: BTreeSet<&'static str>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("./kvtablet-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9123)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9250))),
            scanner: ScannerConfig::DEFAULT,
            pre_write_buffer_bytes_max: KvTabletConfig::DEFAULT.pre_write_buffer_bytes_max,
            snapshot_interval_ms: SNAPSHOT_INTERVAL_MS_DEFAULT,
            snapshot_num_retained: SNAPSHOT_NUM_RETAINED_DEFAULT,
            lease_expiration_check_interval_ms: EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
            recovery_fetcher: FetcherConfig::DEFAULT,
            engine_write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            segment_bytes_max: LogConfig::DEFAULT.segment_bytes_max,
            tiering_interval_ms: TIERING_INTERVAL_MS_DEFAULT,
            local_retention: LocalRetention::default(),
            remote_log_ttl_ms: Some(crate::node::LOG_TTL_MS_DEFAULT),
            wire: WireConfig::default(),
            remote_data_dir: RemoteDataDir::default(),
            s3: S3Config::default(),
            explicit: BTreeSet::new(),
        }
    }
}

/// One setting given on the command line: `-D key=value`, or a flag such as `--listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// Where it came from, for error messages: `-D`, `--listen`, ...
    pub origin: &'static str,
}

impl Setting {
    pub fn new(key: &str, value: impl Into<String>, origin: &'static str) -> Setting {
        Setting { key: key.to_string(), value: value.into(), origin }
    }

    /// Parses the argument of `-D KEY=VALUE`.
    pub fn parse_assignment(argument: &str) -> Result<Setting, ConfigError> {
        match argument.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(Setting::new(key.trim(), value.trim(), "-D"))
            }
            _ => Err(ConfigError::BadAssignment { argument: argument.to_string() }),
        }
    }

    /// `--listen ADDR`.
    pub fn listen(value: impl Into<String>) -> Setting {
        Setting::new(BIND_LISTENERS, value, "--listen")
    }

    /// `--data-dir DIR`.
    pub fn data_dir(value: &Path) -> Setting {
        Setting::new(DATA_DIR, value.to_string_lossy(), "--data-dir")
    }

    /// `--metrics-listen ADDR|off`.
    pub fn metrics_listen(value: impl Into<String>) -> Setting {
        Setting::new(METRICS_LISTEN, value, "--metrics-listen")
    }
}

impl ServeConfig {
    /// The defaults, then the TOML file at `file` (if any), then `settings` in order.
    pub fn load(file: Option<&Path>, settings: &[Setting]) -> Result<ServeConfig, ConfigError> {
        let text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?,
            ),
            None => None,
        };
        let file = file.zip(text.as_deref());
        ServeConfig::from_sources(file, settings)
    }

    /// As [`ServeConfig::load`], with the file's text already read.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        settings: &[Setting],
    ) -> Result<ServeConfig, ConfigError> {
        let mut config = ServeConfig::default();
        if let Some((path, text)) = file {
            let origin = format!("in the config file {}", path.display());
            let table = text.parse::<toml::Table>().map_err(|error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: error.to_string(),
            })?;
            let mut flat = Vec::new();
            flatten("", &table, &mut flat);
            for (key, value) in flat {
                let value = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(number) => number.to_string(),
                    other => {
                        return Err(ConfigError::BadValue {
                            value: shown_value(&key, &other.to_string()),
                            key,
                            origin,
                            reason: "expected a string or an integer".to_string(),
                        })
                    }
                };
                config.set(&key, &value, &origin)?;
            }
        }
        for setting in settings {
            config.set(&setting.key, &setting.value, &format!("from {}", setting.origin))?;
        }
        config.validate()?;
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        let Some(entry) = config_key::find(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                origin: origin.to_string(),
            });
        };
        (entry.apply)(self, value).map_err(|reason| ConfigError::BadValue {
            key: key.to_string(),
            value: shown_value(key, value),
            origin: origin.to_string(),
            reason,
        })?;
        self.explicit.insert(entry.name);
        Ok(())
    }

    /// What no single key can check.
    fn validate(&self) -> Result<(), ConfigError> {
        self.scanner.validate().map_err(ConfigError::Invalid)?;
        self.wire.check().map_err(ConfigError::Invalid)?;
        self.s3.validate().map_err(ConfigError::Invalid)?;
        // The fetcher's own rule: each key's bounds, and the threads within the slots.
        self.recovery_fetcher
            .validate()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(ConfigError::Invalid(format!(
                "{BIND_LISTENERS} and {METRICS_LISTEN} are both {}",
                self.listen
            )));
        }
        Ok(())
    }

    /// Whether `key` was set by the file or the command line.
    pub fn is_set(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }

    /// Whether the metrics endpoint was asked for, rather than left at its default address.
    pub fn metrics_listen_is_set(&self) -> bool {
        self.is_set(METRICS_LISTEN)
    }
}

/// A value as an error may show it: a secret's is not echoed, not even a malformed one.
fn shown_value(key: &str, value: &str) -> String {
    if SECRET_KEYS.contains(&key) {
        "***".to_string()
    } else {
        value.to_string()
    }
}

/// Dotted keys and their leaf values: `[kv.scanner] ttl = ..` and `kv.scanner.ttl = ..` both
/// give `kv.scanner.ttl`.
fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            leaf => out.push((key, leaf)),
        }
    }
}

/// The keys with their defaults, for `kvtablet serve --help`.
pub fn keys_help() -> String {
    let mut help = String::from(
        "Configuration keys, set in the --config TOML file or with -D KEY=VALUE (the command \
         line overrides the file; a flag overrides -D). Durations: \"30 s\", \"10 min\", \
         \"500 ms\", \"1 h\" (a bare integer is ms). Sizes: \"10 mb\", \"4 MiB\" (a bare integer \
         is bytes).\n",
    );
    for key in KEYS {
        let _ = write!(help, "\n  {} = \"{}\"\n      {}\n", key.name, key.default, key.doc);
    }
    help
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn from_file(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_sources(Some((Path::new("node.toml"), text)), &[])
    }

    fn bad_key(result: Result<ServeConfig, ConfigError>) -> String {
        match result {
            Err(ConfigError::BadValue { key, .. }) => key,
            other => panic!("expected a bad value, got {other:?}"),
        }
    }

    #[test]
    fn nothing_given_is_the_documented_defaults() {
        let config = ServeConfig::from_sources(None, &[]).expect("defaults");
        assert_eq!(config, ServeConfig::default());
        assert_eq!(config.listen, "127.0.0.1:9123".parse().expect("addr"));
        assert_eq!(config.metrics_listen, Some("127.0.0.1:9250".parse().expect("addr")));
        assert_eq!(config.data_dir, PathBuf::from("./kvtablet-data"));
        assert_eq!(config.scanner, ScannerConfig::DEFAULT);
        assert_eq!(config.wire, WireConfig::default());
        assert!(!config.metrics_listen_is_set());
    }

    #[test]
    fn the_pre_write_buffer_bound_is_a_size_and_reaches_the_node() {
        let settings = [Setting::new("kv.pre-write-buffer.max-size", "8 MiB", "-D")];
        let config = ServeConfig::from_sources(None, &settings).expect("parses");
        assert_eq!(config.pre_write_buffer_bytes_max, 8 * 1024 * 1024);
        let zero = [Setting::new("kv.pre-write-buffer.max-size", "0", "-D")];
        assert_eq!(bad_key(ServeConfig::from_sources(None, &zero)), "kv.pre-write-buffer.max-size");
    }

    #[test]
    fn snapshot_keys_take_fluss_defaults_and_refuse_zero() {
        let config = ServeConfig::from_sources(None, &[]).expect("defaults");
        assert_eq!(config.snapshot_interval_ms, 10 * 60 * 1_000);
        assert_eq!(config.snapshot_num_retained, 2);
        let settings = [
            Setting::new("kv.snapshot.interval", "200 ms", "-D"),
            Setting::new("kv.snapshot.num-retained", "5", "-D"),
        ];
        let config = ServeConfig::from_sources(None, &settings).expect("parses");
        assert_eq!(config.snapshot_interval_ms, 200);
        assert_eq!(config.snapshot_num_retained, 5);
        for (key, value) in [
            ("kv.snapshot.interval", "0"),
            ("kv.snapshot.interval", "off"),
            ("kv.snapshot.num-retained", "0"),
        ] {
            let refused = ServeConfig::from_sources(None, &[Setting::new(key, value, "-D")]);
            assert_eq!(bad_key(refused), key, "{key} = {value}");
        }
    }

    #[test]
    fn recovery_download_keys_take_flusss_defaults_and_refuse_what_the_fetcher_refuses() {
        let config = ServeConfig::from_sources(None, &[]).expect("defaults");
        assert_eq!(config.recovery_fetcher, FetcherConfig::DEFAULT);
        assert_eq!(
            (config.recovery_fetcher.prefetch_num, config.recovery_fetcher.download_threads),
            (4, 3)
        );
        let config =
            from_file("[kv.recover.remote-log]\nprefetch-num = 8\ndownload-threads = \"6\"")
                .expect("parses");
        assert_eq!(
            (config.recovery_fetcher.prefetch_num, config.recovery_fetcher.download_threads),
            (8, 6)
        );
        let cases = [
            (("0", "1"), "kv.recover.remote-log.prefetch-num must be 1 to 64, not 0"),
            (("65", "3"), "kv.recover.remote-log.prefetch-num must be 1 to 64, not 65"),
            (("4", "0"), "kv.recover.remote-log.download-threads must be 1 to 32, not 0"),
            (("64", "33"), "kv.recover.remote-log.download-threads must be 1 to 32, not 33"),
            (("2", "3"), "download-threads (3) exceeds kv.recover.remote-log.prefetch-num (2)"),
        ];
        for ((prefetch_num, download_threads), expected) in cases {
            let settings = [
                Setting::new("kv.recover.remote-log.prefetch-num", prefetch_num, "-D"),
                Setting::new("kv.recover.remote-log.download-threads", download_threads, "-D"),
            ];
            match ServeConfig::from_sources(None, &settings) {
                Err(error @ ConfigError::Invalid(_)) => {
                    let message = error.to_string();
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{prefetch_num}/{download_threads}: {other:?}"),
            }
        }
        let not_a_number = [Setting::new("kv.recover.remote-log.prefetch-num", "-1", "-D")];
        assert_eq!(
            bad_key(ServeConfig::from_sources(None, &not_a_number)),
            "kv.recover.remote-log.prefetch-num"
        );
    }

    #[test]
    fn the_rocksdb_write_buffer_takes_flusss_default_and_a_smaller_size() {
        let config = ServeConfig::from_sources(None, &[]).expect("defaults");
        assert_eq!(config.engine_write_buffer_bytes, 64 * 1024 * 1024);
        let small = [Setting::new("kv.rocksdb.writebuffer.size", "4 mb", "-D")];
        let config = ServeConfig::from_sources(None, &small).expect("parses");
        assert_eq!(config.engine_write_buffer_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn the_remote_data_dir_defaults_to_the_data_dir_and_takes_s3_keys() {
        let config = ServeConfig::from_sources(None, &[]).expect("defaults");
        assert_eq!(config.remote_data_dir, RemoteDataDir::InDataDir);
        assert_eq!(config.s3, S3Config::default());
        let config = from_file(
            r#"
            remote.data.dir = "s3://fluss-bucket/cluster-1/remote"
            [s3]
            endpoint = "http://127.0.0.1:9000"
            region = "eu-west-1"
            access-key = "AKIDEXAMPLE"
            secret-key = "wJalrXUtnFEMI"
            path.style.access = "true"
            multipart.threshold = "16 mb"
            multipart.size = "8 mb"
            retry.limit = 3
            retry.interval = "100 ms"
            "#,
        )
        .expect("parses");
        assert_eq!(
            config.remote_data_dir,
            RemoteDataDir::S3 {
                bucket: "fluss-bucket".to_string(),
                prefix: "cluster-1/remote".to_string()
            }
        );
        assert_eq!(
            config.s3,
            S3Config {
                endpoint: Some("http://127.0.0.1:9000".to_string()),
                region: Some("eu-west-1".to_string()),
                access_key: Some("AKIDEXAMPLE".to_string()),
                secret_key: Some(remote::Secret::new("wJalrXUtnFEMI")),
                path_style_access: true,
                multipart_threshold_bytes: 16 << 20,
                multipart_part_bytes: 8 << 20,
                retry_limit: 3,
                retry_interval_ms: 100,
            }
        );
        assert!(!format!("{config:?}").contains("wJalr"), "the secret is printed");
        let local = [Setting::new("remote.data.dir", "/mnt/remote", "-D")];
        let config = ServeConfig::from_sources(None, &local).expect("parses");
        assert_eq!(config.remote_data_dir, RemoteDataDir::Local(PathBuf::from("/mnt/remote")));
    }

    #[test]
    fn bad_s3_values_name_their_key_and_never_echo_the_secret() {
        let cases = [
            ("remote.data.dir = \"oss://bucket/x\"", "remote.data.dir"),
            ("remote.data.dir = \"s3://No_Such\"", "remote.data.dir"),
            ("s3.endpoint = \"localhost:9000\"", "s3.endpoint"),
            ("s3.path.style.access = \"yes\"", "s3.path.style.access"),
            ("s3.multipart.size = \"1 mb\"", "s3.multipart.size"),
            ("s3.multipart.threshold = \"6 gb\"", "s3.multipart.threshold"),
            ("s3.retry.limit = 21", "s3.retry.limit"),
            ("s3.retry.limit = -1", "s3.retry.limit"),
            ("s3.retry.interval = \"2 min\"", "s3.retry.interval"),
            ("s3.retry.interval = 0", "s3.retry.interval"),
            ("s3.secret-key = 42.5", "s3.secret-key"),
        ];
        for (line, key) in cases {
            assert_eq!(bad_key(from_file(line)), key, "{line}");
        }
        // A secret key given where a string is expected is refused without its value.
        let message =
            from_file("s3.secret-key = [\"wJalrXUtnFEMI\"]").expect_err("refused").to_string();
        assert!(message.contains("s3.secret-key") && !message.contains("wJalr"), "{message}");
        for (text, names) in [
            ("s3.access-key = \"AKID\"", "s3.secret-key"),
            ("s3.secret-key = \"wJalrXUtnFEMI\"", "s3.access-key"),
            ("[s3.multipart]\nthreshold = \"8 mb\"\nsize = \"16 mb\"", "s3.multipart.threshold"),
        ] {
            match from_file(text) {
                Err(error @ ConfigError::Invalid(_)) => {
                    let message = error.to_string();
                    assert!(message.contains(names), "{message}");
                    assert!(!message.contains("wJalr"), "{message}");
                }
                other => panic!("{text}: expected an invalid config, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_documented_default_parses_to_the_default() {
        let settings: Vec<Setting> =
            KEYS.iter().map(|key| Setting::new(key.name, key.default, "-D")).collect();
        let mut config = ServeConfig::from_sources(None, &settings).expect("defaults parse");
        assert_eq!(config.explicit.len(), KEYS.len());
        config.explicit.clear();
        assert_eq!(config, ServeConfig::default());
    }

    /// The README's example file is a valid configuration and sets what it says.
    #[test]
    fn the_readme_example_file_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("the README has a TOML example") + 8;
        let length = readme[start..].find("```").expect("the example ends");
        let config = from_file(&readme[start..start + length]).expect("the README's example");
        assert_eq!(config.segment_bytes_max, 1024 * 1024);
        assert_eq!(config.tiering_interval_ms, 60_000);
        assert_eq!(config.local_retention, LocalRetention::default());
        assert_eq!(config.recovery_fetcher, FetcherConfig::DEFAULT);
    }

    /// The local retention keys, with `off` and their bounds.
    #[test]
    fn local_retention_keys_parse_and_refuse_what_is_out_of_bounds() {
        let config = from_file(
            "[table.log.tiered]\nlocal-segments = 5\nlocal-retention-time = \"2 h\"\n\
             local-retention-size = \"64 mb\"",
        )
        .expect("valid");
        assert_eq!(
            config.local_retention,
            LocalRetention {
                segments_kept: 5,
                age_ms_max: Some(2 * 3_600_000),
                size_bytes_max: Some(64 * 1024 * 1024)
            }
        );
        let off = from_file("table.log.tiered.local-retention-time = \"OFF\"").expect("off");
        assert_eq!(off.local_retention.age_ms_max, None);
        for (text, key) in [
            (
                "table.log.tiered.local-retention-time = \"0 s\"",
                "table.log.tiered.local-retention-time",
            ),
            (
                "table.log.tiered.local-retention-size = 100",
                "table.log.tiered.local-retention-size",
            ),
            ("table.log.tiered.local-segments = 0", "table.log.tiered.local-segments"),
        ] {
            assert_eq!(bad_key(from_file(text)), key, "{text}");
        }
    }

    #[test]
    fn a_file_sets_nested_and_dotted_keys() {
        let config = from_file(
            r#"
            bind.listeners = "FLUSS://127.0.0.1:9999"
            data.dir = "/var/lib/kvtablet"
            metrics.listen = "off"
            "net.max-frame-size" = "4 MiB"

            [kv.scanner]
            ttl = "5 min"
            expiration-interval = 1500
            max-per-bucket = 3
            max-per-server = 30
            max-batch-size = "1mb"

            [net]
            max-connections = 10
            max-in-flight-per-connection = 4
            shutdown-grace = "2s"
            max-request-bytes-in-flight = "8 MiB"
            frame-read-timeout = "5 s"
            max-idle-time = "1 min"
            "#,
        )
        .expect("parses");
        assert_eq!(config.listen, "127.0.0.1:9999".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/kvtablet"));
        assert_eq!(config.metrics_listen, None);
        assert!(config.metrics_listen_is_set());
        assert_eq!(
            config.scanner,
            ScannerConfig {
                ttl_ms: 300_000,
                expiration_interval_ms: 1_500,
                sessions_per_bucket_max: 3,
                sessions_per_server_max: 30,
                batch_bytes_max: 1 << 20,
            }
        );
        assert_eq!(
            config.wire,
            WireConfig {
                max_frame_size: 4 << 20,
                max_in_flight_per_connection: 4,
                max_connections: 10,
                shutdown_grace: Duration::from_secs(2),
                request_bytes_in_flight_max: 8 << 20,
                frame_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn a_budget_that_cannot_hold_the_largest_frame_is_refused() {
        let refused =
            from_file("[net]\nmax-frame-size = \"8 MiB\"\nmax-request-bytes-in-flight = \"8 MiB\"");
        match refused {
            Err(ConfigError::Invalid(message)) => {
                assert!(message.contains("net.max-request-bytes-in-flight"), "{message}")
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
        assert!(from_file("[net]\nmax-idle-time = 0").is_err());
    }

    #[test]
    fn the_command_line_overrides_the_file_and_flags_override_dash_d() {
        let settings = [
            Setting::parse_assignment("kv.scanner.ttl = 1 h").expect("assignment"),
            Setting::parse_assignment("bind.listeners=127.0.0.1:1").expect("assignment"),
            Setting::listen("127.0.0.1:2"),
            Setting::metrics_listen("127.0.0.1:0"),
            Setting::data_dir(Path::new("flag-dir")),
        ];
        let file = "kv.scanner.ttl = \"1 min\"\ndata.dir = \"file-dir\"\nmetrics.listen = \"off\"";
        let config =
            ServeConfig::from_sources(Some((Path::new("node.toml"), file)), &settings).expect("ok");
        assert_eq!(config.scanner.ttl_ms, 3_600_000);
        assert_eq!(config.listen, "127.0.0.1:2".parse().expect("addr"));
        assert_eq!(config.metrics_listen, Some("127.0.0.1:0".parse().expect("addr")));
        assert_eq!(config.data_dir, PathBuf::from("flag-dir"));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_origin() {
        match from_file("[kv.scanner]\nttl-ms = 5") {
            Err(ConfigError::UnknownKey { key, origin }) => {
                assert_eq!(key, "kv.scanner.ttl-ms");
                assert!(origin.contains("node.toml"), "{origin}");
            }
            other => panic!("expected an unknown key, got {other:?}"),
        }
        let from_flag = ServeConfig::from_sources(None, &[Setting::new("kv.nope", "1", "-D")]);
        assert!(
            matches!(from_flag, Err(ConfigError::UnknownKey { origin, .. }) if origin == "from -D")
        );
    }

    #[test]
    fn malformed_toml_is_a_syntax_error() {
        assert!(matches!(from_file("kv.scanner.ttl = "), Err(ConfigError::Syntax { .. })));
        assert!(matches!(from_file("[kv\nttl = 1"), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases = [
            ("bind.listeners = \"nowhere\"", "bind.listeners"),
            ("bind.listeners = \"FLUSS://a:1,FLUSS://b:2\"", "bind.listeners"),
            ("bind.listeners = 9123", "bind.listeners"),
            ("data.dir = \"\"", "data.dir"),
            ("metrics.listen = \"on\"", "metrics.listen"),
            ("kv.scanner.ttl = \"0 s\"", "kv.scanner.ttl"),
            ("kv.scanner.ttl = \"ten minutes\"", "kv.scanner.ttl"),
            ("kv.scanner.ttl = -5", "kv.scanner.ttl"),
            ("kv.scanner.ttl = 1.5", "kv.scanner.ttl"),
            ("kv.scanner.ttl = true", "kv.scanner.ttl"),
            ("kv.scanner.expiration-interval = \"5 weeks\"", "kv.scanner.expiration-interval"),
            ("kv.scanner.max-per-bucket = 0", "kv.scanner.max-per-bucket"),
            ("kv.scanner.max-per-server = 5000000000", "kv.scanner.max-per-server"),
            ("kv.scanner.max-per-server = \"many\"", "kv.scanner.max-per-server"),
            ("kv.scanner.max-batch-size = \"0 b\"", "kv.scanner.max-batch-size"),
            ("kv.scanner.max-batch-size = \"4 gb\"", "kv.scanner.max-batch-size"),
            ("kv.rocksdb.writebuffer.size = \"32 kb\"", "kv.rocksdb.writebuffer.size"),
            ("kv.rocksdb.writebuffer.size = \"2 gb\"", "kv.rocksdb.writebuffer.size"),
            ("net.max-frame-size = 100", "net.max-frame-size"),
            ("net.max-frame-size = \"3 gb\"", "net.max-frame-size"),
            ("net.max-connections = 0", "net.max-connections"),
            ("net.max-in-flight-per-connection = 0", "net.max-in-flight-per-connection"),
            ("net.shutdown-grace = \"soon\"", "net.shutdown-grace"),
            ("net.shutdown-grace = [1, 2]", "net.shutdown-grace"),
        ];
        for (line, key) in cases {
            assert_eq!(bad_key(from_file(line)), key, "{line}");
        }
        let flag = ServeConfig::from_sources(None, &[Setting::listen("localhost")]);
        match flag {
            Err(error @ ConfigError::BadValue { .. }) => {
                let message = error.to_string();
                assert!(message.contains("bind.listeners"), "{message}");
                assert!(message.contains("\"localhost\""), "{message}");
                assert!(message.contains("--listen"), "{message}");
            }
            other => panic!("expected a bad value, got {other:?}"),
        }
    }

    #[test]
    fn a_dash_d_without_equals_is_refused() {
        assert!(matches!(
            Setting::parse_assignment("kv.scanner.ttl"),
            Err(ConfigError::BadAssignment { .. })
        ));
        assert!(matches!(Setting::parse_assignment("=5"), Err(ConfigError::BadAssignment { .. })));
    }

    #[test]
    fn the_same_port_for_both_endpoints_is_refused() {
        let settings =
            [Setting::listen("127.0.0.1:7000"), Setting::metrics_listen("127.0.0.1:7000")];
        assert!(matches!(ServeConfig::from_sources(None, &settings), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let result = ServeConfig::load(Some(Path::new("/nonexistent/kvtablet.toml")), &[]);
        assert!(matches!(result, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn the_help_lists_every_key_with_its_default() {
        let help = keys_help();
        for key in KEYS {
            assert!(help.contains(&format!("{} = \"{}\"", key.name, key.default)), "{}", key.name);
        }
    }
}
