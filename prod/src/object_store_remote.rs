//! Remote storage over the `object_store` crate: a local directory by default, S3 (or an
//! S3-compatible server) for `remote.data.dir = s3://bucket/prefix`, any other object store by
//! handing in an `Arc<dyn ObjectStore>`.
//!
//! Integrity: on a store that keeps object metadata (S3, and `object_store`'s in-memory store),
//! every object is written with the CRC32C of its whole content in its user metadata
//! ([`CRC32C_METADATA_KEY`], S3's `x-amz-meta-kvtablet-crc32c`), and every download of a
//! whole object (`get`, or a `get_range` that covers it) is checked against it:
//! a mismatch, or an object without the checksum, is [`RemoteError::Corrupt`]. The local
//! directory store cannot keep metadata with a file, so there the objects carry no checksum
//! of their own and are not checked here: the snapshot layer is what verifies them (every file
//! of a [`kvtablet_core::snapshot::CompletedSnapshot`] is listed with its size, CRC32C and
//! SHA-256, and the `_METADATA` object is itself checksummed), as it does on every store.
//!
//! Retries: on S3 each request is retried by `object_store`'s client (`s3.retry.limit` times,
//! exponential backoff from `s3.retry.interval`, jittered, for 5xx, throttling, timeouts and
//! connection errors); what still fails is classified into [`RemoteError`]'s kinds:
//! transient (the caller may retry later), not found, or fatal (credentials, permissions, a
//! missing bucket, a refused request).

use std::ops::Range;
use std::path::{Path as HostPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt};
use kvtablet_core::env::{RemoteError, RemoteObject, RemoteStorage};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, GetOptions, GetRange,
    GetResult, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};

use crate::config::remote::{RemoteDataDir, S3Config};

/// The user-metadata key under which an object's CRC32C (8 lowercase hex digits) is stored.
pub const CRC32C_METADATA_KEY: &str = "kvtablet-crc32c";
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// The longest one S3 request may take (a whole part upload included).
const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest backoff between two retries of one request, and the longest one request may
/// spend retrying.
const S3_BACKOFF_MAX: Duration = Duration::from_secs(30);
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(180);

/// A [`RemoteStorage`] on any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectStoreRemote {
    store: Arc<dyn ObjectStore>,
    /// For the local directory store, its root: a `put` is synced to disk (the file and the
    /// directories down to it) before it succeeds, as a put to S3 is durable when answered.
    /// `object_store`'s local store only writes and renames, so without this an object that a
    /// committed KV snapshot lists could be lost or empty after an OS crash or power loss.
    sync_root: Option<LocalRoot>,
    /// Whether objects carry their CRC32C in their metadata, checked on download.
    checksums: bool,
    /// Objects above the threshold are uploaded in parts.
    multipart: Option<Multipart>,
    /// What the store is, for messages: `s3://bucket/prefix`, a directory, `object store`.
    name: String,
}

/// When and how an object is uploaded in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart {
    /// Objects larger than this go up in parts.
    pub threshold_bytes: u64,
    /// The size of each part but the last (S3 wants at least 5 MiB).
    pub part_bytes: u64,
}

/// The local store and its root directory (canonical, as the store resolves it).
#[derive(Debug, Clone)]
struct LocalRoot {
    store: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl ObjectStoreRemote {
    /// A store used as is: no checksum kept, no multipart upload.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let name = store.to_string();
        ObjectStoreRemote { store, sync_root: None, checksums: false, multipart: None, name }
    }

    /// Keeps each object's CRC32C in its metadata and checks it on every whole download. The
    /// store must keep user metadata (`Attribute::Metadata`), as S3 and the in-memory store do.
    pub fn with_checksums(mut self) -> Self {
        self.checksums = true;
        self
    }

    /// Uploads objects larger than `multipart.threshold_bytes` in parts.
    pub fn with_multipart(mut self, multipart: Multipart) -> Self {
        self.multipart = Some(multipart);
        self
    }

    /// The remote data directory `dir` (`remote.data.dir`), with `data_dir/remote` for the
    /// default and the `s3.*` settings for an S3 one. An S3 store is asked once whether its
    /// bucket answers: a missing bucket or refused credentials fail here, loudly, rather than
    /// at the first snapshot.
    pub async fn open(
        dir: &RemoteDataDir,
        s3: &S3Config,
        data_dir: &HostPath,
    ) -> Result<ObjectStoreRemote, RemoteError> {
        match dir {
            RemoteDataDir::InDataDir => ObjectStoreRemote::local(data_dir.join("remote")),
            RemoteDataDir::Local(path) => ObjectStoreRemote::local(path),
            RemoteDataDir::S3 { bucket, prefix } => {
                let remote = ObjectStoreRemote::s3(bucket, prefix, s3)?;
                remote.probe().await?;
                Ok(remote)
            }
        }
    }

    /// Objects under `prefix/` in the S3 bucket `bucket`, reached as `config` says; nothing
    /// is sent yet.
    pub fn s3(bucket: &str, prefix: &str, config: &S3Config) -> Result<Self, RemoteError> {
        // Unset keys fall back to AWS_* variables; the keys set here win.
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        match &config.endpoint {
            Some(endpoint) if config.path_style_access => {
                builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
            }
            Some(endpoint) => {
                // Virtual-hosted style: object_store wants the bucket in the endpoint's host.
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                builder = builder
                    .with_endpoint(format!("{scheme}://{bucket}.{host}"))
                    .with_virtual_hosted_style_request(true);
            }
            None => {
                builder = builder.with_virtual_hosted_style_request(!config.path_style_access);
            }
        }
        if let (Some(access_key), Some(secret_key)) = (&config.access_key, &config.secret_key) {
            builder =
                builder.with_access_key_id(access_key).with_secret_access_key(secret_key.expose());
        }
        let allow_http = config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(S3_REQUEST_TIMEOUT)
            .with_connect_timeout(S3_CONNECT_TIMEOUT);
        let init_backoff = Duration::from_millis(config.retry_interval_ms.max(1));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff,
                max_backoff: S3_BACKOFF_MAX.max(init_backoff),
                base: 2.0,
            },
            max_retries: config.retry_limit as usize,
            retry_timeout: S3_RETRY_TIMEOUT,
        };
        let name = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let s3 =
            builder.with_client_options(client).with_retry(retry).build().map_err(|error| {
                // The builder's messages name settings, never the secret's value.
                RemoteError::Fatal(format!("{name}: cannot configure the S3 store: {error}"))
            })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, parse_path(prefix)?))
        };
        let multipart = Multipart {
            threshold_bytes: config.multipart_threshold_bytes,
            part_bytes: config.multipart_part_bytes,
        };
        Ok(ObjectStoreRemote {
            store,
            sync_root: None,
            checksums: true,
            multipart: Some(multipart),
            name,
        })
    }

    /// One listing of the top level: fails if the bucket is missing, the credentials are
    /// refused or the server does not answer (after the client's retries).
    pub async fn probe(&self) -> Result<(), RemoteError> {
        match self.store.list_with_delimiter(None).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                Err(RemoteError::Fatal(format!("{}: the bucket does not exist", self.name)))
            }
            Err(error) => Err(map_error(&self.name, error)),
        }
    }

    /// What the store is: `s3://bucket/prefix`, or the local store's description.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The embedded default: objects are files under `root`, which is created if missing.
    /// `put` writes a temporary file and renames it, so readers see whole objects only.
    pub fn local(root: impl AsRef<HostPath>) -> Result<Self, RemoteError> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|error| {
            RemoteError::Fatal(format!("cannot create remote root {}: {error}", root.display()))
        })?;
        let canonical_root = std::fs::canonicalize(root).map_err(|error| {
            RemoteError::Fatal(format!("cannot resolve remote root {}: {error}", root.display()))
        })?;
        let store = LocalFileSystem::new_with_prefix(&canonical_root)
            .map_err(|error| map_error(&root.display().to_string(), error))?
            // Deleting the last object of a directory removes the directory, as on S3 where
            // directories do not exist.
            .with_automatic_cleanup(true);
        let store = Arc::new(store);
        let name = canonical_root.display().to_string();
        let sync_root = LocalRoot { store: Arc::clone(&store), root: canonical_root };
        Ok(ObjectStoreRemote {
            store,
            sync_root: Some(sync_root),
            checksums: false,
            multipart: None,
            name,
        })
    }
}

/// Syncs the object's file, then each directory from its own up to the root: a rename (or a
/// directory `object_store` created for it) is durable only once its directory is.
fn sync_object_durably(local: &LocalRoot, location: &ObjectPath) -> Result<(), String> {
    let file = local.store.path_to_filesystem(location).map_err(|error| error.to_string())?;
    let sync = |path: &HostPath| {
        std::fs::File::open(path)
            .and_then(|opened| opened.sync_all())
            .map_err(|error| format!("{}: {error}", path.display()))
    };
    sync(&file)?;
    let mut dir = file.parent();
    while let Some(current) = dir.filter(|dir| dir.starts_with(&local.root)) {
        sync(current)?;
        dir = current.parent();
    }
    Ok(())
}

fn parse_path(path: &str) -> Result<ObjectPath, RemoteError> {
    // A malformed path is a caller bug; retrying the same path cannot help.
    ObjectPath::parse(path)
        .map_err(|error| RemoteError::Fatal(format!("invalid remote path {path:?}: {error}")))
}

/// Maps an `object_store` error onto the retry verdicts of [`RemoteError`].
fn map_error(path: &str, error: object_store::Error) -> RemoteError {
    use object_store::Error as StoreError;
    match error {
        StoreError::NotFound { .. } => RemoteError::NotFound(path.to_string()),
        StoreError::Generic { .. } if caused_by_permission(&error) => {
            RemoteError::Fatal(format!("{path}: {error}"))
        }
        // An HTTP answer the client did not retry (it retries 5xx, 408 and 429 until its
        // limit): the request itself was refused (400 bad request, 405, 411, ...).
        StoreError::Generic { .. } if http_status(&error).is_some_and(is_final_status) => {
            RemoteError::Fatal(format!("{path}: {error}"))
        }
        StoreError::Generic { .. } | StoreError::JoinError { .. } => {
            RemoteError::Transient(format!("{path}: {error}"))
        }
        // Permission, credential and configuration failures, unsupported operations, and the
        // preconditions this binding never asks for: repeating the call cannot fix any of them.
        _ => RemoteError::Fatal(format!("{path}: {error}")),
    }
}

/// The local store reports `EACCES` as a generic error; find it in the cause chain.
fn caused_by_permission(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io_error) = current.downcast_ref::<std::io::Error>() {
            if io_error.kind() == std::io::ErrorKind::PermissionDenied {
                return true;
            }
        }
        cause = current.source();
    }
    false
}

/// The HTTP status in `error`'s cause chain, if an HTTP answer caused it. `object_store` does
/// not export its retry error, whose message is the only place that carries the status
/// ("... status code: 400 Bad Request ...").
fn http_status(error: &object_store::Error) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if let Some(at) = text.find(MARKER) {
            let digits = text[at + MARKER.len()..].get(..3)?;
            return digits.parse().ok();
        }
        cause = current.source();
    }
    None
}

/// A status that repeating the same request will not change.
fn is_final_status(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 408 | 409 | 429)
}

/// The CRC32C of `bytes` as stored in an object's metadata.
fn crc32c_text(bytes: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(bytes))
}

/// Checks a whole object's bytes against the CRC32C stored with it.
fn verify_checksum(path: &str, attributes: &Attributes, bytes: &[u8]) -> Result<(), RemoteError> {
    let key = Attribute::Metadata(CRC32C_METADATA_KEY.into());
    let Some(stored) = attributes.get(&key) else {
        return Err(RemoteError::Corrupt(format!(
            "{path}: the object has no {CRC32C_METADATA_KEY} checksum (not written by kvtablet, \
             or its metadata was lost)"
        )));
    };
    let actual = crc32c_text(bytes);
    if stored.as_ref() != actual {
        return Err(RemoteError::Corrupt(format!(
            "{path}: checksum mismatch: the object's CRC32C is {} but the {} bytes downloaded \
             have {actual}",
            stored.as_ref(),
            bytes.len()
        )));
    }
    Ok(())
}

/// Reads a [`GetResult`]'s bytes and, when the store keeps checksums and the bytes are the
/// whole object, checks them.
async fn read_checked(
    path: &str,
    result: GetResult,
    checksums: bool,
) -> Result<Vec<u8>, RemoteError> {
    let attributes = result.attributes.clone();
    let object_size = result.meta.size;
    let starts_at_zero = result.range.start == 0;
    let bytes = result.bytes().await.map_err(|error| map_error(path, error))?;
    if checksums && starts_at_zero && bytes.len() as u64 == object_size {
        verify_checksum(path, &attributes, &bytes)?;
    }
    Ok(bytes.to_vec())
}

/// Uploads `bytes` in parts of `part_bytes`, [`PARTS_IN_FLIGHT`] at a time; an upload that
/// fails is aborted, so that no parts are left behind on the server.
async fn put_multipart(
    store: &Arc<dyn ObjectStore>,
    location: &ObjectPath,
    bytes: Bytes,
    part_bytes: usize,
    attributes: Attributes,
) -> Result<(), object_store::Error> {
    let options = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
    let mut upload = store.put_multipart_opts(location, options).await?;
    let mut parts = Vec::with_capacity(bytes.len().div_ceil(part_bytes));
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + part_bytes).min(bytes.len());
        parts.push(upload.put_part(PutPayload::from(bytes.slice(start..end))));
        start = end;
    }
    let uploaded: Result<Vec<()>, object_store::Error> =
        futures::stream::iter(parts).buffer_unordered(PARTS_IN_FLIGHT).try_collect().await;
    let completed = match uploaded {
        Ok(_) => upload.complete().await.map(|_| ()),
        Err(error) => Err(error),
    };
    if completed.is_err() {
        if let Err(abort_error) = upload.abort().await {
            tracing::warn!(%location, %abort_error, "a failed multipart upload was not aborted");
        }
    }
    completed
}

/// The part of `prefix` up to its last `/`: the directory to list. Object stores list by
/// whole path segments, while [`RemoteStorage::list`] matches any string prefix.
fn listing_dir(prefix: &str) -> &str {
    match prefix.rfind('/') {
        Some(slash) => &prefix[..slash],
        None => "",
    }
}

impl RemoteStorage for ObjectStoreRemote {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'static, Result<(), RemoteError>> {
        let store = Arc::clone(&self.store);
        let sync_root = self.sync_root.clone();
        let checksums = self.checksums;
        let multipart = self.multipart;
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            let mut attributes = Attributes::new();
            if checksums {
                attributes.insert(
                    Attribute::Metadata(CRC32C_METADATA_KEY.into()),
                    AttributeValue::from(crc32c_text(&bytes)),
                );
            }
            let bytes = Bytes::from(bytes);
            let put = match multipart {
                Some(parts) if bytes.len() as u64 > parts.threshold_bytes => {
                    let part_bytes = usize::try_from(parts.part_bytes).unwrap_or(usize::MAX);
                    put_multipart(&store, &location, bytes, part_bytes.max(1), attributes).await
                }
                _ => {
                    let options = PutOptions { attributes, ..PutOptions::default() };
                    store.put_opts(&location, PutPayload::from(bytes), options).await.map(|_| ())
                }
            };
            put.map_err(|error| match map_error(&path, error) {
                // Nothing is missing for a put but the bucket itself.
                RemoteError::NotFound(_) => {
                    RemoteError::Fatal(format!("{path}: the bucket does not exist"))
                }
                other => other,
            })?;
            let Some(local) = sync_root else { return Ok(()) };
            // A failed sync leaves the page cache in doubt; a retried put writes the whole
            // object again under a new temporary name, so retrying is safe.
            tokio::task::spawn_blocking(move || sync_object_durably(&local, &location))
                .await
                .map_err(|error| RemoteError::Transient(format!("{path}: sync: {error}")))?
                .map_err(|error| RemoteError::Transient(format!("{path}: sync: {error}")))
        }
        .boxed()
    }

    fn get(&self, path: &str) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let store = Arc::clone(&self.store);
        let checksums = self.checksums;
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            let result = store.get(&location).await.map_err(|error| map_error(&path, error))?;
            read_checked(&path, result, checksums).await
        }
        .boxed()
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let store = Arc::clone(&self.store);
        let checksums = self.checksums;
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            if range.start >= range.end {
                // Nothing to read, but a missing object is still reported as missing.
                store.head(&location).await.map_err(|error| map_error(&path, error))?;
                return Ok(Vec::new());
            }
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            match store.get_opts(&location, options).await {
                // A range that covers the whole object is checked as a `get` is.
                Ok(result) => read_checked(&path, result, checksums).await,
                Err(error @ object_store::Error::NotFound { .. }) => Err(map_error(&path, error)),
                Err(error) => {
                    // Stores reject a range that starts past the end; the contract clips it to
                    // nothing instead. Only a second look at the size tells the two apart.
                    let meta =
                        store.head(&location).await.map_err(|error| map_error(&path, error))?;
                    if meta.size <= range.start {
                        Ok(Vec::new())
                    } else {
                        Err(map_error(&path, error))
                    }
                }
            }
        }
        .boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<RemoteObject>, RemoteError>> {
        let store = Arc::clone(&self.store);
        let prefix = prefix.to_string();
        async move {
            let dir = listing_dir(&prefix);
            let dir_location = if dir.is_empty() { None } else { Some(parse_path(dir)?) };
            let metas: Vec<object_store::ObjectMeta> =
                store.list(dir_location.as_ref()).try_collect().await.map_err(|error| {
                    match map_error(&prefix, error) {
                        // A listing finds nothing rather than a missing object: what is missing is
                        // the bucket.
                        RemoteError::NotFound(_) => {
                            RemoteError::Fatal(format!("{prefix}: the bucket does not exist"))
                        }
                        other => other,
                    }
                })?;
            let mut objects: Vec<RemoteObject> = metas
                .into_iter()
                .map(|meta| RemoteObject { path: meta.location.to_string(), size_bytes: meta.size })
                .filter(|object| object.path.starts_with(&prefix))
                .collect();
            objects.sort();
            Ok(objects)
        }
        .boxed()
    }

    fn delete(&self, path: &str) -> BoxFuture<'static, Result<(), RemoteError>> {
        let store = Arc::clone(&self.store);
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(map_error(&path, error)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime")
    }

    fn temp_remote() -> (tempfile::TempDir, ObjectStoreRemote) {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = ObjectStoreRemote::local(dir.path().join("remote")).expect("remote");
        (dir, remote)
    }

    #[test]
    fn put_then_get_and_overwrite() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            remote.put("snapshots/t1-b0/1/data", b"first".to_vec()).await.expect("put");
            assert_eq!(remote.get("snapshots/t1-b0/1/data").await.expect("get"), b"first");
            remote.put("snapshots/t1-b0/1/data", b"second".to_vec()).await.expect("put");
            assert_eq!(remote.get("snapshots/t1-b0/1/data").await.expect("get"), b"second");
            remote.put("empty", Vec::new()).await.expect("put empty");
            assert_eq!(remote.get("empty").await.expect("get empty"), b"");
        });
    }

    #[test]
    fn get_range_is_clipped() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            remote.put("segment", b"0123456789".to_vec()).await.expect("put");
            assert_eq!(remote.get_range("segment", 2..5).await.expect("range"), b"234");
            assert_eq!(remote.get_range("segment", 8..100).await.expect("range"), b"89");
            assert_eq!(remote.get_range("segment", 10..20).await.expect("range"), b"");
            assert_eq!(remote.get_range("segment", 50..60).await.expect("range"), b"");
            assert_eq!(remote.get_range("segment", 4..4).await.expect("range"), b"");
            assert!(matches!(
                remote.get_range("missing", 0..4).await,
                Err(RemoteError::NotFound(_))
            ));
            assert!(matches!(
                remote.get_range("missing", 4..4).await,
                Err(RemoteError::NotFound(_))
            ));
        });
    }

    #[test]
    fn list_matches_string_prefixes_sorted() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            for path in ["a/b/2", "a/b/10", "a/bc/1", "a/c", "z"] {
                remote.put(path, path.as_bytes().to_vec()).await.expect("put");
            }
            let paths = |objects: Vec<RemoteObject>| -> Vec<String> {
                objects.into_iter().map(|object| object.path).collect()
            };
            assert_eq!(
                paths(remote.list("").await.expect("list")),
                ["a/b/10", "a/b/2", "a/bc/1", "a/c", "z"]
            );
            assert_eq!(
                paths(remote.list("a/b").await.expect("list")),
                ["a/b/10", "a/b/2", "a/bc/1"]
            );
            assert_eq!(paths(remote.list("a/b/").await.expect("list")), ["a/b/10", "a/b/2"]);
            assert_eq!(paths(remote.list("a/b/1").await.expect("list")), ["a/b/10"]);
            assert!(remote.list("nothing/here").await.expect("list").is_empty());
            let sizes: Vec<u64> =
                remote.list("a/c").await.expect("list").iter().map(|o| o.size_bytes).collect();
            assert_eq!(sizes, [3]);
        });
    }

    #[test]
    fn delete_and_not_found() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            remote.put("lease/t1-b0", b"holder".to_vec()).await.expect("put");
            remote.delete("lease/t1-b0").await.expect("delete");
            assert!(matches!(remote.get("lease/t1-b0").await, Err(RemoteError::NotFound(_))));
            remote.delete("lease/t1-b0").await.expect("deleting a missing object succeeds");
            assert!(remote.list("lease").await.expect("list").is_empty());
        });
    }

    /// An in-memory store keeps user metadata as S3 does.
    fn checked_memory_remote() -> (Arc<object_store::memory::InMemory>, ObjectStoreRemote) {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let remote = ObjectStoreRemote::new(memory.clone())
            .with_checksums()
            .with_multipart(Multipart { threshold_bytes: 100, part_bytes: 40 });
        (memory, remote)
    }

    #[test]
    fn checksums_are_stored_with_objects_and_checked_on_whole_downloads() {
        let (memory, remote) = checked_memory_remote();
        runtime().block_on(async {
            remote.put("small", b"0123456789".to_vec()).await.expect("put");
            let large: Vec<u8> = (0..=250u8).collect();
            remote.put("large", large.clone()).await.expect("multipart put");
            for (path, bytes) in [("small", b"0123456789".to_vec()), ("large", large.clone())] {
                let stored = memory.get(&ObjectPath::from(path)).await.expect("get");
                let crc = stored.attributes.get(&Attribute::Metadata(CRC32C_METADATA_KEY.into()));
                assert_eq!(crc.map(|v| v.as_ref().to_string()), Some(crc32c_text(&bytes)));
                assert_eq!(remote.get(path).await.expect("get"), bytes);
            }
            assert_eq!(remote.get_range("large", 30..50).await.expect("range"), &large[30..50]);
            assert_eq!(remote.get_range("large", 0..1_000).await.expect("whole"), large);

            // The bytes change behind the store's back, their checksum does not.
            let mut attributes = Attributes::new();
            attributes.insert(
                Attribute::Metadata(CRC32C_METADATA_KEY.into()),
                AttributeValue::from(crc32c_text(b"0123456789")),
            );
            let options = PutOptions { attributes, ..PutOptions::default() };
            let payload = PutPayload::from_static(b"0123456780");
            memory.put_opts(&ObjectPath::from("small"), payload, options).await.expect("plant");
            let corrupt = remote.get("small").await;
            assert!(
                matches!(&corrupt, Err(RemoteError::Corrupt(message)) if message.contains("small") && message.contains("checksum mismatch")),
                "{corrupt:?}"
            );
            assert!(matches!(remote.get_range("small", 0..10).await, Err(RemoteError::Corrupt(_))));
            assert_eq!(remote.get_range("small", 0..4).await.expect("a part"), b"0123");
            // An object written without one is refused too.
            let payload = PutPayload::from_static(b"bits");
            memory.put(&ObjectPath::from("unsummed"), payload).await.expect("plant");
            assert!(matches!(remote.get("unsummed").await, Err(RemoteError::Corrupt(_))));
        });
    }

    #[test]
    fn http_statuses_are_found_in_error_messages() {
        let error = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://127.0.0.1:1/b/k in 2ms - Server returned non-2xx \
                     status code: 400 Bad Request: <Error/>"
                .into(),
        };
        assert_eq!(http_status(&error), Some(400));
        assert!(matches!(map_error("k", error), RemoteError::Fatal(_)));
        let error = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable".into(),
        };
        assert!(matches!(map_error("k", error), RemoteError::Transient(_)));
        let error = object_store::Error::Generic { store: "S3", source: "connection reset".into() };
        assert_eq!(http_status(&error), None);
        assert!(matches!(map_error("k", error), RemoteError::Transient(_)));
        assert!(is_final_status(403) && !is_final_status(429) && !is_final_status(500));
    }

    #[test]
    fn malformed_paths_are_fatal() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            assert!(matches!(remote.get("a/../b").await, Err(RemoteError::Fatal(_))));
            assert!(matches!(remote.put("a//b", Vec::new()).await, Err(RemoteError::Fatal(_))));
        });
    }
}
