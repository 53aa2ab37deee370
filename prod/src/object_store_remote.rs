//! Remote storage over the `object_store` crate: a local directory by default, any object
//! store (S3, GCS, Azure) by handing in another `Arc<dyn ObjectStore>`.

use std::ops::Range;
use std::path::{Path as HostPath, PathBuf};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use futures::TryStreamExt;
use kvtablet_core::env::{RemoteError, RemoteObject, RemoteStorage};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// A [`RemoteStorage`] on any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectStoreRemote {
    store: Arc<dyn ObjectStore>,
    /// For the local directory store, its root: a `put` is synced to disk (the file and the
    /// directories down to it) before it succeeds, as a put to S3 is durable when answered.
    /// `object_store`'s local store only writes and renames, so without this an object that a
    /// committed KV snapshot lists could be lost or empty after an OS crash or power loss.
    sync_root: Option<LocalRoot>,
}

/// The local store and its root directory (canonical, as the store resolves it).
#[derive(Debug, Clone)]
struct LocalRoot {
    store: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl ObjectStoreRemote {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectStoreRemote { store, sync_root: None }
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
        let sync_root = LocalRoot { store: Arc::clone(&store), root: canonical_root };
        Ok(ObjectStoreRemote { store, sync_root: Some(sync_root) })
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
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            store
                .put(&location, PutPayload::from(bytes))
                .await
                .map_err(|error| map_error(&path, error))?;
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
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            let result = store.get(&location).await.map_err(|error| map_error(&path, error))?;
            let bytes = result.bytes().await.map_err(|error| map_error(&path, error))?;
            Ok(bytes.to_vec())
        }
        .boxed()
    }

    fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> {
        let store = Arc::clone(&self.store);
        let path = path.to_string();
        async move {
            let location = parse_path(&path)?;
            if range.start >= range.end {
                // Nothing to read, but a missing object is still reported as missing.
                store.head(&location).await.map_err(|error| map_error(&path, error))?;
                return Ok(Vec::new());
            }
            match store.get_range(&location, range.clone()).await {
                Ok(bytes) => Ok(bytes.to_vec()),
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
            let metas: Vec<object_store::ObjectMeta> = store
                .list(dir_location.as_ref())
                .try_collect()
                .await
                .map_err(|error| map_error(&prefix, error))?;
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

    #[test]
    fn malformed_paths_are_fatal() {
        let (_dir, remote) = temp_remote();
        runtime().block_on(async {
            assert!(matches!(remote.get("a/../b").await, Err(RemoteError::Fatal(_))));
            assert!(matches!(remote.put("a//b", Vec::new()).await, Err(RemoteError::Fatal(_))));
        });
    }
}
