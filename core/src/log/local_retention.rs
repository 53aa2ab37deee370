//! How much of a tiered changelog a bucket keeps on its local disk: the rules that let local
//! retention delete closed segments once they are in remote storage.

/// Fluss's `table.log.tiered.local-segments` default.
pub const LOCAL_SEGMENTS_KEPT_DEFAULT: usize = 2;

/// Local retention of a tiered log. Each rule deletes on its own (the offset retention asks
/// for is the highest any rule reaches), only closed segments are ever candidates, and the
/// log's own bounds (minimum retain offset, remote end, high watermark) apply on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRetention {
    /// Closed segments kept beside the active one (`table.log.tiered.local-segments`).
    pub segments_kept: usize,
    /// A closed segment whose newest batch is older than this is deleted
    /// (`table.log.tiered.local-retention-time`); `None` keeps them whatever their age.
    pub age_ms_max: Option<u64>,
    /// The oldest closed segments are deleted while the log's local bytes (the active segment
    /// included) exceed this (`table.log.tiered.local-retention-size`); `None`: no bound.
    pub size_bytes_max: Option<u64>,
}

impl Default for LocalRetention {
    fn default() -> Self {
        LocalRetention {
            segments_kept: LOCAL_SEGMENTS_KEPT_DEFAULT,
            age_ms_max: None,
            size_bytes_max: None,
        }
    }
}

/// One local segment as retention sees it, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedSegment {
    pub base_offset: u64,
    pub size_bytes: u64,
    /// The newest batch's commit time (wall clock); 0 for an empty segment.
    pub max_timestamp_ms: u64,
}

impl LocalRetention {
    /// The offset below which retention may delete: the base offset of the oldest segment
    /// that every rule keeps. `segments` are the log's local segments in offset order, the
    /// last one active (never a candidate); `log_start_offset` is answered when nothing goes.
    pub fn offset(
        &self,
        segments: &[RetainedSegment],
        log_start_offset: u64,
        now_wall_ms: u64,
    ) -> u64 {
        let Some((_active, closed)) = segments.split_last() else {
            return log_start_offset;
        };
        // The number of oldest closed segments each rule deletes; the most wins.
        let by_count = closed.len().saturating_sub(self.segments_kept);
        let by_age = match self.age_ms_max {
            Some(age_ms_max) => closed
                .iter()
                .take_while(|segment| {
                    now_wall_ms.saturating_sub(segment.max_timestamp_ms) > age_ms_max
                })
                .count(),
            None => 0,
        };
        let by_size = match self.size_bytes_max {
            Some(size_bytes_max) => {
                let mut local_bytes: u64 = segments.iter().map(|segment| segment.size_bytes).sum();
                closed
                    .iter()
                    .take_while(|segment| {
                        let over = local_bytes > size_bytes_max;
                        local_bytes -= segment.size_bytes;
                        over
                    })
                    .count()
            }
            None => 0,
        };
        let deleted = by_count.max(by_age).max(by_size);
        debug_assert!(deleted <= closed.len());
        segments[deleted].base_offset.max(log_start_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(sizes_and_times: &[(u64, u64)]) -> Vec<RetainedSegment> {
        sizes_and_times
            .iter()
            .enumerate()
            .map(|(index, (size_bytes, max_timestamp_ms))| RetainedSegment {
                base_offset: index as u64 * 100,
                size_bytes: *size_bytes,
                max_timestamp_ms: *max_timestamp_ms,
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_closed_segments_and_the_active_one() {
        let log = segments(&[(10, 0), (10, 0), (10, 0), (10, 0), (10, 0)]);
        let retention = LocalRetention { segments_kept: 2, ..LocalRetention::default() };
        assert_eq!(retention.offset(&log, 0, 0), 200);
        let retention = LocalRetention { segments_kept: 0, ..LocalRetention::default() };
        assert_eq!(retention.offset(&log, 0, 0), 400, "the active segment is never deleted");
        let retention = LocalRetention { segments_kept: 9, ..LocalRetention::default() };
        assert_eq!(retention.offset(&log, 0, 0), 0);
    }

    #[test]
    fn deletes_closed_segments_older_than_the_age_bound_only() {
        let log = segments(&[(10, 1_000), (10, 5_000), (10, 9_000), (10, 1)]);
        let retention =
            LocalRetention { segments_kept: 9, age_ms_max: Some(3_000), size_bytes_max: None };
        // At 10 s the first two are older than 3 s; the active one is never a candidate,
        // however old its newest batch.
        assert_eq!(retention.offset(&log, 0, 10_000), 200);
        assert_eq!(retention.offset(&log, 0, 100_000), 300);
        assert_eq!(retention.offset(&log, 0, 4_000), 0, "exactly at the bound is kept");
    }

    #[test]
    fn deletes_the_oldest_until_the_local_bytes_fit() {
        let log = segments(&[(40, 0), (30, 0), (20, 0), (10, 0)]);
        let bounded = |size| LocalRetention {
            segments_kept: 9,
            age_ms_max: None,
            size_bytes_max: Some(size),
        };
        assert_eq!(bounded(100).offset(&log, 0, 0), 0);
        assert_eq!(bounded(99).offset(&log, 0, 0), 100);
        assert_eq!(bounded(60).offset(&log, 0, 0), 100);
        assert_eq!(bounded(59).offset(&log, 0, 0), 200);
        assert_eq!(bounded(0).offset(&log, 0, 0), 300, "never past the active segment");
    }

    #[test]
    fn the_strictest_rule_decides_and_never_below_the_log_start() {
        let log = segments(&[(10, 0), (10, 0), (10, 0), (10, 50_000)]);
        let retention =
            LocalRetention { segments_kept: 2, age_ms_max: Some(1_000), size_bytes_max: Some(35) };
        assert_eq!(retention.offset(&log, 0, 60_000), 300);
        assert_eq!(retention.offset(&log, 350, 0), 350);
        assert_eq!(retention.offset(&[], 7, 0), 7);
    }
}
