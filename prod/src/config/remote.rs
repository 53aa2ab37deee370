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

/// What a client needs to read tiered changelog segments itself, as Fluss's clients do:
/// FetchLog below the local log start answers with the segments' remote location, and
/// GetFileSystemSecurityToken with the credentials to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRemoteAccess {
    /// S3 reached with the instance's or the environment's credentials, which the node cannot
    /// hand on: FetchLog serves the tiered range through the node instead.
    ThroughNode,
    /// A local directory: read as files, no credentials (an empty token).
    LocalFiles,
    /// S3 with the node's own keys: handed to the client as Fluss's token (JSON
    /// `access_key_id`, `access_key_secret`) and `fs.s3a.*` addition info.
    S3 {
        access_key: String,
        secret_key: Secret,
        endpoint: Option<String>,
        region: String,
        path_style_access: bool,
    },
}

/// The region an S3 client uses when `s3.region` is unset and so is `AWS_REGION`.
const S3_REGION_DEFAULT: &str = "us-east-1";

/// A GetFileSystemSecurityToken answer: `schema`, `token` and the addition info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub schema: String,
    pub token: Vec<u8>,
    pub addition_info: Vec<(String, String)>,
}

impl ClientRemoteAccess {
    /// What the clients of a node on `remote` (with `s3`) are given; `aws_region` is the
    /// `AWS_REGION` environment variable, which the node's own S3 client falls back to.
    pub fn of(remote: &RemoteDataDir, s3: &S3Config, aws_region: Option<String>) -> Self {
        match (remote, &s3.access_key, &s3.secret_key) {
            (RemoteDataDir::InDataDir | RemoteDataDir::Local(_), _, _) => {
                ClientRemoteAccess::LocalFiles
            }
            (RemoteDataDir::S3 { .. }, Some(access_key), Some(secret_key)) => {
                ClientRemoteAccess::S3 {
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    endpoint: s3.endpoint.clone(),
                    region: s3
                        .region
                        .clone()
                        .or(aws_region)
                        .unwrap_or_else(|| S3_REGION_DEFAULT.to_string()),
                    path_style_access: s3.path_style_access,
                }
            }
            (RemoteDataDir::S3 { .. }, _, _) => ClientRemoteAccess::ThroughNode,
        }
    }

    /// Whether clients read the tiered range themselves.
    pub fn is_direct(&self) -> bool {
        !matches!(self, ClientRemoteAccess::ThroughNode)
    }

    /// The answer to GetFileSystemSecurityToken. Fluss's clients wait for one before their
    /// first remote download; an empty token means "no credentials needed" (fluss-rs then
    /// reads with no properties). For S3 the keys go in the token as fluss-rs parses it
    /// (`credentials.rs`: `access_key_id`, `access_key_secret`, optional `security_token`)
    /// and the rest as the `fs.s3a.*` keys it maps onto its S3 client (`endpoint`,
    /// `endpoint.region`, `path.style.access`). The token has no expiration time.
    pub fn token(&self) -> ClientToken {
        match self {
            ClientRemoteAccess::ThroughNode | ClientRemoteAccess::LocalFiles => {
                ClientToken { schema: String::new(), token: Vec::new(), addition_info: Vec::new() }
            }
            ClientRemoteAccess::S3 {
                access_key,
                secret_key,
                endpoint,
                region,
                path_style_access,
            } => {
                let token = serde_json::json!({
                    "access_key_id": access_key,
                    "access_key_secret": secret_key.expose(),
                });
                let mut addition_info = Vec::new();
                if let Some(endpoint) = endpoint {
                    addition_info.push(("fs.s3a.endpoint".to_string(), endpoint.clone()));
                }
                addition_info.push(("fs.s3a.endpoint.region".to_string(), region.clone()));
                addition_info
                    .push(("fs.s3a.path.style.access".to_string(), path_style_access.to_string()));
                ClientToken {
                    schema: "s3".to_string(),
                    token: token.to_string().into_bytes(),
                    addition_info,
                }
            }
        }
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

    #[test]
    fn clients_get_no_credentials_for_a_local_directory_and_the_nodes_keys_for_s3() {
        let local = ClientRemoteAccess::of(&RemoteDataDir::InDataDir, &S3Config::default(), None);
        assert_eq!(local, ClientRemoteAccess::LocalFiles);
        assert_eq!(
            local.token(),
            ClientToken { schema: String::new(), token: Vec::new(), addition_info: Vec::new() }
        );
        let s3_dir = RemoteDataDir::S3 { bucket: "b".to_string(), prefix: "p".to_string() };
        let keys = S3Config {
            endpoint: Some("http://127.0.0.1:9000".to_string()),
            access_key: Some("AKIA".to_string()),
            secret_key: Some(Secret::new("shh")),
            path_style_access: true,
            ..S3Config::default()
        };
        let s3 = ClientRemoteAccess::of(&s3_dir, &keys, Some("eu-west-1".to_string()));
        let token = s3.token();
        assert_eq!(token.schema, "s3");
        let parsed: serde_json::Value = serde_json::from_slice(&token.token).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"access_key_id": "AKIA", "access_key_secret": "shh"})
        );
        let info =
            |key: &str| token.addition_info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(info("fs.s3a.endpoint"), Some("http://127.0.0.1:9000"));
        assert_eq!(info("fs.s3a.endpoint.region"), Some("eu-west-1"));
        assert_eq!(info("fs.s3a.path.style.access"), Some("true"));
        assert!(!format!("{s3:?}").contains("shh"), "the secret is never printed");
        // Without keys of its own the node cannot hand credentials on.
        let instance = S3Config { access_key: None, secret_key: None, ..keys };
        assert_eq!(
            ClientRemoteAccess::of(&s3_dir, &instance, None),
            ClientRemoteAccess::ThroughNode
        );
    }
}
