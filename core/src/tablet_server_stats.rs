//! A read-only view of a tablet server for metrics: its scan sessions and the offsets of each
//! hosted bucket. Reading it takes the same locks as a request does, briefly, and changes
//! nothing.

use crate::recovery::RecoveryProgress;
use crate::table_bucket::TableBucket;
use crate::tablet_server::TabletServer;

/// What a tablet server reports at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Scan sessions registered (open and not yet closed, evicted or drained).
    pub scanner_sessions: usize,
    /// Every hosted bucket, in bucket order.
    pub buckets: Vec<BucketStats>,
    /// Why the whole server stopped serving (a panic no replica owned), if it did.
    pub failure: Option<String>,
    /// Background loops that ended while what they serve runs
    /// ([`TabletServer::ended_background_loops`]): each is work that has stopped unseen.
    pub ended_background_loops: Vec<(Option<TableBucket>, String)>,
}

/// One hosted bucket's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketStats {
    pub bucket: TableBucket,
    pub leader_epoch: u32,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    /// The offset the engine holds every change below; `None` unless this server leads the
    /// bucket (a follower's engine is not being written).
    pub flushed_offset: Option<u64>,
    /// Why the replica stopped serving (a corrupt or fatal engine error, a panic), if it did.
    pub failure: Option<String>,
}

impl BucketStats {
    /// Changes in the log that lookups cannot see yet: log end minus flushed offset, for a
    /// bucket this server leads.
    pub fn flush_lag(&self) -> Option<u64> {
        self.flushed_offset.map(|flushed| self.log_end_offset.saturating_sub(flushed))
    }
}

impl ServerStats {
    /// The largest flush lag over the led buckets; 0 when none is led.
    pub fn max_flush_lag(&self) -> u64 {
        self.buckets.iter().filter_map(BucketStats::flush_lag).max().unwrap_or(0)
    }

    /// Replicas that stopped serving after a fatal error or a panic.
    pub fn failed_replicas(&self) -> usize {
        self.buckets.iter().filter(|bucket| bucket.failure.is_some()).count()
    }
}

/// Why a server, or some of its replicas, stopped serving: the failures of [`ServerStats`]
/// without the offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFailures {
    /// Why the whole server stopped serving, if it did.
    pub server: Option<String>,
    /// Each stopped replica and why, in bucket order.
    pub replicas: Vec<(TableBucket, String)>,
}

/// The KV recoveries a tablet server runs at one moment (what `/metrics` reports of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Each bucket recovering its engine from KV snapshots, in bucket order.
    pub buckets: Vec<(TableBucket, RecoveryProgress)>,
}

impl RecoveryStats {
    /// How many buckets are recovering.
    pub fn recovering_buckets(&self) -> usize {
        self.buckets.len()
    }
}

impl TabletServer {
    /// The buckets recovering their engines from KV snapshots, with their progress. Takes no
    /// lock a request holds for long.
    pub fn recovery_stats(&self) -> RecoveryStats {
        let buckets = self
            .hosted_replicas()
            .iter()
            .filter_map(|replica| Some((replica.bucket(), replica.recovery_progress()?)))
            .collect();
        RecoveryStats { buckets }
    }

    /// Whether `bucket` is hosted and recovering its engine from KV snapshots.
    pub fn is_recovering(&self, bucket: TableBucket) -> bool {
        self.replica(bucket).is_some_and(|replica| replica.recovery_progress().is_some())
    }

    /// Why the server and its replicas stopped, if any did: what a health check needs, without
    /// the locks that reading every bucket's offsets takes.
    pub fn failures(&self) -> ServerFailures {
        let replicas = self
            .hosted_replicas()
            .iter()
            .filter_map(|replica| Some((replica.bucket(), replica.failure()?)))
            .collect();
        ServerFailures { server: self.failure(), replicas }
    }

    /// The server's background loops that ended while what they serve runs: a hosted
    /// replica's term loops ([`Replica::ended_term_loops`], by bucket) and the scan sessions'
    /// evictor (without a bucket). Empty while every loop runs.
    pub fn ended_background_loops(&self) -> Vec<(Option<TableBucket>, String)> {
        let mut ended: Vec<(Option<TableBucket>, String)> = self
            .hosted_replicas()
            .iter()
            .flat_map(|replica| {
                let bucket = replica.bucket();
                replica.ended_term_loops().into_iter().map(move |name| (Some(bucket), name))
            })
            .collect();
        ended.extend(self.ended_evictor().map(|name| (None, name)));
        ended
    }

    /// The server's scan sessions and every hosted bucket's offsets, for metrics.
    pub fn stats(&self) -> ServerStats {
        let buckets = self
            .hosted_replicas()
            .iter()
            .map(|replica| {
                let log = replica.log();
                BucketStats {
                    bucket: replica.bucket(),
                    leader_epoch: replica.leader_epoch(),
                    log_end_offset: log.log_end_offset(),
                    high_watermark: log.high_watermark(),
                    flushed_offset: replica.leader_kv().ok().map(|kv| kv.flushed_log_offset()),
                    failure: replica.failure(),
                }
            })
            .collect();
        ServerStats {
            scanner_sessions: self.scanners().counts().registered,
            buckets,
            failure: self.failure(),
            ended_background_loops: self.ended_background_loops(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(log_end_offset: u64, flushed_offset: Option<u64>) -> BucketStats {
        BucketStats {
            bucket: TableBucket::new(1, 0),
            leader_epoch: 1,
            log_end_offset,
            high_watermark: log_end_offset,
            flushed_offset,
            failure: None,
        }
    }

    #[test]
    fn flush_lag_counts_only_led_buckets() {
        assert_eq!(bucket(10, Some(4)).flush_lag(), Some(6));
        assert_eq!(bucket(10, None).flush_lag(), None);
        let stats = ServerStats {
            scanner_sessions: 0,
            buckets: vec![bucket(10, Some(9)), bucket(50, None), bucket(7, Some(2))],
            failure: None,
            ended_background_loops: Vec::new(),
        };
        assert_eq!(stats.max_flush_lag(), 5);
        assert_eq!(stats.failed_replicas(), 0);
        assert_eq!(ServerStats::default().max_flush_lag(), 0);
    }
}
