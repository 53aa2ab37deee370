//! Every public Fluss api key, with the version range this server advertises in ApiVersions.
//!
//! The keys and their visibility are those of Fluss's `ApiKeys.java`; private keys (used only
//! between Fluss servers) are left out. ListKvSnapshots (1064) is advertised as fluss-rs
//! 1.0.0's `ApiKey` lists it (version 0), since its `list_kv_snapshots` needs it. Every key is advertised at version 0 only, except
//! PutKv (0..=2), Lookup (0..=1) and PrefixLookup (0..=1). The request bodies do not differ
//! between versions; a higher version only changes how a server with a lake format interprets
//! keys, which does not apply here.
//!
//! Advertising a key does not mean it is implemented: the handler answers an ERROR_RESPONSE for
//! the ones it does not serve. A key that is not advertised is a hard error in the client as
//! soon as it needs it.

macro_rules! api_keys {
    ($($variant:ident = $id:literal, $name:literal, $min:literal ..= $max:literal;)*) => {
        /// A public Fluss api key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ApiKey {
            $($variant,)*
        }

        impl ApiKey {
            /// Every key this server advertises, in id order.
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$variant,)*];

            /// The id on the wire.
            pub const fn id(self) -> i16 {
                match self {
                    $(ApiKey::$variant => $id,)*
                }
            }

            /// The key with this id; `None` for an unknown or private key.
            pub const fn from_id(id: i16) -> Option<ApiKey> {
                match id {
                    $($id => Some(ApiKey::$variant),)*
                    _ => None,
                }
            }

            /// The name in Fluss's `ApiKeys.java`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ApiKey::$variant => $name,)*
                }
            }

            /// The lowest version this server accepts.
            pub const fn min_version(self) -> i16 {
                match self {
                    $(ApiKey::$variant => $min,)*
                }
            }

            /// The highest version this server accepts.
            pub const fn max_version(self) -> i16 {
                match self {
                    $(ApiKey::$variant => $max,)*
                }
            }
        }
    };
}

api_keys! {
    ApiVersions = 1000, "API_VERSIONS", 0..=0;
    CreateDatabase = 1001, "CREATE_DATABASE", 0..=0;
    DropDatabase = 1002, "DROP_DATABASE", 0..=0;
    ListDatabases = 1003, "LIST_DATABASES", 0..=0;
    DatabaseExists = 1004, "DATABASE_EXISTS", 0..=0;
    CreateTable = 1005, "CREATE_TABLE", 0..=0;
    DropTable = 1006, "DROP_TABLE", 0..=0;
    GetTableInfo = 1007, "GET_TABLE_INFO", 0..=0;
    ListTables = 1008, "LIST_TABLES", 0..=0;
    ListPartitionInfos = 1009, "LIST_PARTITION_INFOS", 0..=0;
    TableExists = 1010, "TABLE_EXISTS", 0..=0;
    GetTableSchema = 1011, "GET_TABLE_SCHEMA", 0..=0;
    Metadata = 1012, "GET_METADATA", 0..=0;
    ProduceLog = 1014, "PRODUCE_LOG", 0..=0;
    FetchLog = 1015, "FETCH_LOG", 0..=0;
    PutKv = 1016, "PUT_KV", 0..=2;
    Lookup = 1017, "LOOKUP", 0..=1;
    ListOffsets = 1021, "LIST_OFFSETS", 0..=0;
    GetLatestKvSnapshots = 1023, "GET_LATEST_KV_SNAPSHOTS", 0..=0;
    GetKvSnapshotMetadata = 1024, "GET_KV_SNAPSHOT_METADATA", 0..=0;
    GetFileSystemSecurityToken = 1025, "GET_FILESYSTEM_SECURITY_TOKEN", 0..=0;
    InitWriter = 1026, "INIT_WRITER", 0..=0;
    GetLakeSnapshot = 1032, "GET_LAKE_SNAPSHOT", 0..=0;
    LimitScan = 1033, "LIMIT_SCAN", 0..=0;
    PrefixLookup = 1034, "PREFIX_LOOKUP", 0..=1;
    GetDatabaseInfo = 1035, "GET_DATABASE_INFO", 0..=0;
    CreatePartition = 1036, "CREATE_PARTITION", 0..=0;
    DropPartition = 1037, "DROP_PARTITION", 0..=0;
    Authenticate = 1038, "AUTHENTICATE", 0..=0;
    CreateAcls = 1039, "CREATE_ACLS", 0..=0;
    ListAcls = 1040, "LIST_ACLS", 0..=0;
    DropAcls = 1041, "DROP_ACLS", 0..=0;
    AlterTable = 1044, "ALTER_TABLE", 0..=0;
    DescribeClusterConfigs = 1045, "DESCRIBE_CLUSTER_CONFIGS", 0..=0;
    AlterClusterConfigs = 1046, "ALTER_CLUSTER_CONFIGS", 0..=0;
    AddServerTag = 1047, "ADD_SERVER_TAG", 0..=0;
    RemoveServerTag = 1048, "REMOVE_SERVER_TAG", 0..=0;
    Rebalance = 1049, "REBALANCE", 0..=0;
    ListRebalanceProgress = 1050, "LIST_REBALANCE_PROGRESS", 0..=0;
    CancelRebalance = 1051, "CANCEL_REBALANCE", 0..=0;
    RegisterProducerOffsets = 1053, "REGISTER_PRODUCER_OFFSETS", 0..=0;
    GetProducerOffsets = 1054, "GET_PRODUCER_OFFSETS", 0..=0;
    DeleteProducerOffsets = 1055, "DELETE_PRODUCER_OFFSETS", 0..=0;
    AcquireKvSnapshotLease = 1056, "ACQUIRE_KV_SNAPSHOT_LEASE", 0..=0;
    ReleaseKvSnapshotLease = 1057, "RELEASE_KV_SNAPSHOT_LEASE", 0..=0;
    DropKvSnapshotLease = 1058, "DROP_KV_SNAPSHOT_LEASE", 0..=0;
    GetTableStats = 1059, "GET_TABLE_STATS", 0..=0;
    AlterDatabase = 1060, "ALTER_DATABASE", 0..=0;
    ScanKv = 1061, "SCAN_KV", 0..=0;
    ListKvSnapshots = 1064, "LIST_KV_SNAPSHOTS", 0..=0;
}

/// Why a request's key and version were refused; answered as `UNSUPPORTED_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("unknown api key {0}")]
    UnknownKey(i16),
    #[error("{name}({id}) version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion { name: &'static str, id: i16, version: i16, min: i16, max: i16 },
}

impl ApiKey {
    /// Whether this server accepts `version` of the key.
    pub const fn supports(self, version: i16) -> bool {
        self.min_version() <= version && version <= self.max_version()
    }

    /// The key of a request header, if it is known and its version is in range.
    pub fn check(id: i16, version: i16) -> Result<ApiKey, ApiKeyError> {
        let key = ApiKey::from_id(id).ok_or(ApiKeyError::UnknownKey(id))?;
        if key.supports(version) {
            Ok(key)
        } else {
            Err(ApiKeyError::UnsupportedVersion {
                name: key.name(),
                id,
                version,
                min: key.min_version(),
                max: key.max_version(),
            })
        }
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sorted_and_round_trip() {
        let ids: Vec<i16> = ApiKey::ALL.iter().map(|key| key.id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        for &key in ApiKey::ALL {
            assert_eq!(ApiKey::from_id(key.id()), Some(key));
            assert!(key.min_version() <= key.max_version());
            assert_eq!(key.min_version(), 0);
        }
    }

    #[test]
    fn advertises_the_ranges_pyfluss_negotiates() {
        let range = |id| {
            let key = ApiKey::from_id(id).unwrap();
            (key.min_version(), key.max_version())
        };
        assert_eq!(range(1016), (0, 2), "PutKv");
        assert_eq!(range(1017), (0, 1), "Lookup");
        assert_eq!(range(1034), (0, 1), "PrefixLookup");
        assert_eq!(range(1061), (0, 0), "ScanKv");
        for id in
            [1000, 1001, 1005, 1007, 1012, 1015, 1021, 1023, 1024, 1025, 1026, 1033, 1035, 1064]
        {
            assert_eq!(range(id), (0, 0), "{id}");
        }
    }

    #[test]
    fn private_and_unknown_keys_are_absent() {
        for id in [
            0,
            999,
            1013,
            1018,
            1019,
            1020,
            1022,
            1027,
            1028,
            1029,
            1030,
            1031,
            1042,
            1043,
            1052,
            1062,
            -1,
            i16::MIN,
            i16::MAX,
        ] {
            assert_eq!(ApiKey::from_id(id), None, "{id}");
        }
    }

    #[test]
    fn check_refuses_unknown_keys_and_versions_out_of_range() {
        assert_eq!(ApiKey::check(1016, 2), Ok(ApiKey::PutKv));
        assert_eq!(ApiKey::check(9999, 0), Err(ApiKeyError::UnknownKey(9999)));
        assert!(matches!(
            ApiKey::check(1016, 3),
            Err(ApiKeyError::UnsupportedVersion { id: 1016, version: 3, min: 0, max: 2, .. })
        ));
        assert!(ApiKey::check(1000, -1).is_err());
        assert_eq!(ApiKey::PutKv.to_string(), "PUT_KV(1016)");
    }
}
