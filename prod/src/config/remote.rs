//! Where the remote data directory lives (`remote.data.dir`) and how the S3 store is reached
//! (`s3.*`, Fluss's S3 filesystem keys: Fluss hands `s3.X` to Hadoop's S3A as `fs.s3a.X`, so
//! `s3.endpoint`, `s3.region`, `s3.access-key`, `s3.secret-key`, `s3.path.style.access`,
//! `s3.multipart.threshold`, `s3.multipart.size`, `s3.retry.limit` and `s3.retry.interval` mean
//! what S3A's keys of those names mean).

use std::path::PathBuf;

/// The S3 minimum part size (every part but the last): smaller parts are refused by S3.
pub const S3_PART_BYTES_MIN: u64 = 5 * 1024 * 1024;
/// The S3 maximum part size.
pub const S3_PART_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// S3A's defaults: objects above 128 MiB go up in parts of 64 MiB.
pub const S3_MULTIPART_THRESHOLD_DEFAULT: u64 = 128 * 1024 * 1024;
pub const S3_MULTIPART_PART_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// S3A's `fs.s3a.retry.limit` and `fs.s3a.retry.interval` defaults.
pub const S3_RETRY_LIMIT_DEFAULT: u32 = 7;
pub const S3_RETRY_INTERVAL_MS_DEFAULT: u64 = 500;
/// Bounds of the retry keys: a request is given up within minutes, never retried forever.
pub const S3_RETRY_LIMIT_MAX: u32 = 20;
pub const S3_RETRY_INTERVAL_MS_MAX: u64 = 60_000;

/// `remote.data.dir`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RemoteDataDir {
    /// Not set: the directory `remote` inside `data.dir`.
    #[default]
    InDataDir,
    /// A local directory (a path, or `file:///path`).
    Local(PathBuf),
    /// `s3://bucket/prefix`: objects under `prefix/` (no leading or trailing `/`; may be
    /// empty) in `bucket`.
    S3 { bucket: String, prefix: String },
}

impl RemoteDataDir {
    /// Parses a `remote.data.dir` value; the empty string is the default.
    pub fn parse(value: &str) -> Result<RemoteDataDir, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(RemoteDataDir::InDataDir);
        }
        let Some((scheme, rest)) = value.split_once("://") else {
            return Ok(RemoteDataDir::Local(PathBuf::from(value)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if !rest.starts_with('/') {
                    return Err("a file:// URI takes an absolute path (file:///dir)".to_string());
                }
                Ok(RemoteDataDir::Local(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if !valid_bucket_name(bucket) {
                    return Err(format!(
                        "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, \
                         dots and hyphens)"
                    ));
                }
                let prefix = prefix.trim_matches('/');
                if prefix.split('/').any(|part| part == "." || part == "..")
                    || prefix.contains("//")
                {
                    return Err(format!("{prefix:?} is not a valid object prefix"));
                }
                Ok(RemoteDataDir::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() })
            }
            other => Err(format!(
                "the scheme {other}:// is not supported; use s3://bucket/prefix or a local path"
            )),
        }
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A value that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that hands it to the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `s3.*`: used only when `remote.data.dir` is an `s3://` URI. A key left unset falls back to
/// the standard `AWS_*` environment variables (and, for credentials, the instance's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `s3.endpoint`: `http(s)://host[:port]`; unset is AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// `s3.region`.
    pub region: Option<String>,
    /// `s3.access-key`.
    pub access_key: Option<String>,
    /// `s3.secret-key`.
    pub secret_key: Option<Secret>,
    /// `s3.path.style.access`: `http://endpoint/bucket/key` instead of
    /// `http://bucket.endpoint/key` (MinIO, moto and most S3-compatible servers want it).
    pub path_style_access: bool,
    /// `s3.multipart.threshold`: objects larger than this are uploaded in parts.
    pub multipart_threshold_bytes: u64,
    /// `s3.multipart.size`: the size of each part but the last.
    pub multipart_part_bytes: u64,
    /// `s3.retry.limit`: retries of one request after a transient failure (5xx, throttling,
    /// timeout, connection error).
    pub retry_limit: u32,
    /// `s3.retry.interval`: the first retry's backoff, doubled at each retry.
    pub retry_interval_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            access_key: None,
            secret_key: None,
            path_style_access: false,
            multipart_threshold_bytes: S3_MULTIPART_THRESHOLD_DEFAULT,
            multipart_part_bytes: S3_MULTIPART_PART_BYTES_DEFAULT,
            retry_limit: S3_RETRY_LIMIT_DEFAULT,
            retry_interval_ms: S3_RETRY_INTERVAL_MS_DEFAULT,
        }
    }
}

impl S3Config {
    /// What no single key can check.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.access_key, &self.secret_key) {
            (Some(_), None) => {
                return Err("s3.access-key is set but s3.secret-key is not".to_string())
            }
            (None, Some(_)) => {
                return Err("s3.secret-key is set but s3.access-key is not".to_string())
            }
            _ => {}
        }
        if self.multipart_threshold_bytes < self.multipart_part_bytes {
            return Err(format!(
                "s3.multipart.threshold ({} bytes) is below s3.multipart.size ({} bytes)",
                self.multipart_threshold_bytes, self.multipart_part_bytes
            ));
        }
        Ok(())
    }
}

/// Parses `s3.endpoint`: an `http://` or `https://` URL with a host and nothing after the
/// port (a path would be taken for the bucket).
pub fn parse_endpoint(value: &str) -> Result<Option<String>, String> {
    let value = value.trim().trim_end_matches('/');
    if value.is_empty() {
        return Ok(None);
    }
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| "expected http://host[:port] or https://host[:port]".to_string())?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("expected http://host[:port] or https://host[:port], with no path".to_string());
    }
    Ok(Some(value.to_string()))
}

/// Parses a boolean as Fluss does: `true` or `false`, any case.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_data_dirs_parse() {
        assert_eq!(RemoteDataDir::parse(""), Ok(RemoteDataDir::InDataDir));
        assert_eq!(
            RemoteDataDir::parse("/mnt/remote"),
            Ok(RemoteDataDir::Local(PathBuf::from("/mnt/remote")))
        );
        assert_eq!(
            RemoteDataDir::parse("file:///mnt/remote"),
            Ok(RemoteDataDir::Local(PathBuf::from("/mnt/remote")))
        );
        assert_eq!(
            RemoteDataDir::parse("s3://my-bucket/fluss/remote/"),
            Ok(RemoteDataDir::S3 {
                bucket: "my-bucket".to_string(),
                prefix: "fluss/remote".to_string()
            })
        );
        assert_eq!(
            RemoteDataDir::parse("s3://my.bucket"),
            Ok(RemoteDataDir::S3 { bucket: "my.bucket".to_string(), prefix: String::new() })
        );
        for bad in [
            "s3://",
            "s3://Upper/x",
            "s3://ab",
            "s3://-bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "oss://bucket/x",
            "hdfs://namenode/x",
            "file://relative",
        ] {
            assert!(RemoteDataDir::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn endpoints_are_http_urls_without_a_path() {
        assert_eq!(parse_endpoint(""), Ok(None));
        assert_eq!(
            parse_endpoint("http://127.0.0.1:9000/"),
            Ok(Some("http://127.0.0.1:9000".to_string()))
        );
        assert_eq!(
            parse_endpoint("https://s3.eu-west-1.amazonaws.com"),
            Ok(Some("https://s3.eu-west-1.amazonaws.com".to_string()))
        );
        for bad in ["127.0.0.1:9000", "ftp://host", "http://", "http://host/bucket", "http://a b"] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_secret_is_never_printed() {
        let secret = Secret::new("wJalrXUtnFEMI");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        let config = S3Config { secret_key: Some(secret), ..S3Config::default() };
        assert!(!format!("{config:?}").contains("wJalr"));
    }
}
