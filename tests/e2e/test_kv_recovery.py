"""Recovery of lost KV engines through pyfluss (issue 11): a node with small segments, short
snapshot and tiering intervals and one local segment kept is SIGKILLed after local retention
removed its early changelog segments, every `kv-*` directory of its tables is deleted, and on
restart every bucket of both tables (one partitioned) recovers from its KV snapshot and the
changelog: lookups of every key and the whole changelog from the earliest offset are as before.

The second case also deletes a file of each bucket's latest snapshot from the remote store:
recovery reports that snapshot broken and falls back to the previous one, whose offset lies
below the local log's start, so it replays the remote changelog from there (the node's log
says so, and the check below asserts it).

test_kv_recovery_s3 runs the same against moto's S3 server."""

from __future__ import annotations

import http.client
import re
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "e2e_recovery"
PLAIN = fluss.TablePath(DB, "plain")
PARTED = fluss.TablePath(DB, "parted")
REGION = "EU"
BUCKETS = 2
SNAPSHOT_INTERVAL_MS = 500
SETTINGS = [
    "log.segment.file-size=4 kb",
    "remote.log.task-interval-duration=200 ms",
    f"kv.snapshot.interval={SNAPSHOT_INTERVAL_MS} ms",
    "kv.snapshot.num-retained=3",
    "table.log.tiered.local-segments=1",
]
#: The snapshots' commits are logged at debug: the test reads their offsets from the log.
SERVER_ENV = {"RUST_LOG": "info,kvtablet_core::snapshot::snapshot_schedule=debug", "NO_COLOR": "1"}
ROWS = 60
LOOKUPERS = 20
#: Rows per flush: a round is several small batches per bucket, so that it spans several
#: segments and local retention moves the log start into the round.
ROWS_PER_FLUSH = 6
#: Rounds written before each case; more (bounded) when the snapshots do not fit the case.
ROUNDS = 3
EXTRA_ROUNDS_MAX = 4
#: Seconds between rounds: more than a snapshot interval, so a snapshot ends each round.
ROUND_PAUSE_S = 3 * SNAPSHOT_INTERVAL_MS / 1000
#: Seconds for local retention to follow the latest snapshot (tiering ticks every 200 ms).
RETENTION_TIMEOUT_S = 3.0
#: Seconds for the snapshots, tiering and retention to settle after a round.
SETTLE_TIMEOUT_S = 10.0

Row = Dict[str, Any]
#: (partition id or None, bucket id)
BucketKey = Tuple[Optional[int], int]

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BUCKET_FIELD = r"bucket=TableBucket\{tableId=(\d+), (?:partitionId=(\d+), )?bucket=(\d+)\}"
COMMITTED = re.compile(r"kv snapshot committed " + BUCKET_FIELD + r" snapshot_id=(\d+) log_offset=(\d+)")
#: tracing writes an Option field as its value (or leaves it out); Debug would add Some(..).
RECOVERED = re.compile(
    r"engine recovered from a KV snapshot " + BUCKET_FIELD
    + r" snapshot_id=(?:Some\()?(\d+)\)? log_offset=(?:Some\()?(\d+)\)? flushed_offset=(\d+)"
)
BROKEN = re.compile(
    r"a KV snapshot is broken: reported, and the previous one is used " + BUCKET_FIELD
    + r" snapshot_id=(\d+)"
)


#: Seconds a restarted node gets to show a recovery on /metrics (a broken snapshot's missing
#: file alone is retried for about 1.5 s before the recovery falls back).
METRICS_WATCH_S = 10.0
RECOVERING_BUCKETS = re.compile(r"^kvtablet_kv_recovering_buckets (\d+)$", re.M)


def metrics_settings(server) -> List[str]:
    """/metrics on a port of its own, kept across restarts (`server.metrics_port`)."""
    server.metrics_port = support.free_port()
    return [f"metrics.listen=127.0.0.1:{server.metrics_port}"]


def scrape(server) -> str:
    """The node's /metrics; empty while nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=2)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        return response.read().decode() if response.status == 200 else ""
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        connection.close()


def recovering_buckets(text: str) -> Optional[int]:
    match = RECOVERING_BUCKETS.search(text)
    return None if match is None else int(match.group(1))


def plain_descriptor() -> "fluss.TableDescriptor":
    schema = fluss.Schema(pa.schema([("id", pa.int32()), ("body", pa.string())]), primary_keys=["id"])
    return fluss.TableDescriptor(schema, bucket_count=BUCKETS)


def parted_descriptor() -> "fluss.TableDescriptor":
    columns = [("id", pa.int32()), ("region", pa.string()), ("body", pa.string())]
    schema = fluss.Schema(pa.schema(columns), primary_keys=["id", "region"])
    return fluss.TableDescriptor(
        schema, partition_keys=["region"], bucket_count=BUCKETS, bucket_keys=["id"]
    )


def body(row: int, round_: int) -> str:
    return f"round {round_} row {row} " + "x" * 120


def row_of(table: str, row: int, round_: int) -> Row:
    if table == "parted":
        return {"id": row, "region": REGION, "body": body(row, round_)}
    return {"id": row, "body": body(row, round_)}


def key_of(table: str, row: int) -> List[Any]:
    return [row, REGION] if table == "parted" else [row]


def without_ansi(text: str) -> str:
    return ANSI.sub("", text)


def node_log(server) -> str:
    """Every incarnation's output, oldest first."""
    logs = sorted(server.log_dir.glob("kvtablet-*.log"), key=lambda path: int(path.stem.split("-")[1]))
    return without_ansi("".join(path.read_text(errors="replace") for path in logs))


def bucket_of(match: "re.Match", first_group: int) -> Tuple[int, Optional[int], int]:
    table_id, partition_id, bucket = match.group(first_group, first_group + 1, first_group + 2)
    return int(table_id), None if partition_id is None else int(partition_id), int(bucket)


def committed_snapshots(server) -> Dict[Tuple[int, Optional[int], int], List[Tuple[int, int]]]:
    """Per bucket, (snapshot id, log offset) of every committed snapshot, by id."""
    snapshots: Dict[Tuple[int, Optional[int], int], List[Tuple[int, int]]] = {}
    for match in COMMITTED.finditer(node_log(server)):
        snapshots.setdefault(bucket_of(match, 1), []).append((int(match.group(4)), int(match.group(5))))
    return {bucket: sorted(set(found)) for bucket, found in snapshots.items()}


class Tables:
    """The two tables as pyfluss sees them, with their ids."""

    def __init__(self, runner, client) -> None:
        self.plain = runner.run(lambda: client.connection.get_table(PLAIN), "get_table plain")
        self.parted = runner.run(lambda: client.connection.get_table(PARTED), "get_table parted")
        self.plain_id = self.plain.get_table_info().table_id
        self.parted_id = self.parted.get_table_info().table_id

    def by_name(self, name: str):
        return self.plain if name == "plain" else self.parted


def write_round(runner, tables: Tables, round_: int) -> None:
    for name in ("plain", "parted"):
        table = tables.by_name(name)

        async def write() -> None:
            writer = table.new_upsert().create_writer()
            for first in range(0, ROWS, ROWS_PER_FLUSH):
                for row in range(first, min(first + ROWS_PER_FLUSH, ROWS)):
                    writer.upsert(row_of(name, row, round_))
                await writer.flush()

        runner.run(write(), f"round {round_} of {name}")


def lookups(runner, tables: Tables) -> Dict[Tuple[str, int], Optional[Row]]:
    """Every key's row, waiting (bounded) while a bucket is not ready."""
    found: Dict[Tuple[str, int], Optional[Row]] = {}

    def look() -> None:
        for name in ("plain", "parted"):
            table = tables.by_name(name)
            try:
                # pyfluss 1.0.0 runs one Lookuper's lookups one at a time, each waiting for the
                # client's ~100 ms batch (see test_pk_table): several run side by side.
                lookupers = [
                    runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
                    for _ in range(LOOKUPERS)
                ]
                rows = runner.gather(
                    lambda row: lookupers[row % LOOKUPERS].lookup(key_of(name, row)),
                    list(range(ROWS)),
                    f"lookups of {name}",
                )
            except fluss.FlussError as error:
                raise AssertionError(f"lookup refused: {error}") from None
            for row, got in enumerate(rows):
                found[(name, row)] = None if got is None else dict(got)

    support.eventually(look, "lookups of every key")
    return found


def changelog(runner, tables: Tables, partition_id: int, expected_total: int) -> Dict[str, Dict[BucketKey, List[tuple]]]:
    """Each table's whole changelog from the earliest offset, per bucket: (offset, change, row)."""
    logs: Dict[str, Dict[BucketKey, List[tuple]]] = {}
    for name in ("plain", "parted"):
        table = tables.by_name(name)
        scanner = runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
        if name == "plain":
            runner.run(
                lambda: scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(BUCKETS)}),
                "subscribe_buckets",
            )
        else:
            for bucket in range(BUCKETS):
                runner.run(
                    lambda: scanner.subscribe_partition(partition_id, bucket, fluss.EARLIEST_OFFSET),
                    "subscribe_partition",
                )
        entries: Dict[BucketKey, List[tuple]] = {}

        def poll() -> int:
            try:
                records = runner.run(lambda: scanner.poll(500), "LogScanner.poll")
            except fluss.FlussError as error:
                raise AssertionError(f"poll refused: {error}") from None
            count = 0
            for bucket, bucket_records in records.items():
                for record in bucket_records:
                    entries.setdefault((bucket.partition_id, bucket.bucket_id), []).append(
                        (record.offset, record.change_type.short_string(), dict(record.row))
                    )
                    count += 1
            return count

        def complete() -> None:
            poll()
            total = sum(len(found) for found in entries.values())
            assert total >= expected_total, f"{name}: {total} of {expected_total} records so far"

        support.eventually(complete, f"the whole changelog of {name}", timeout=support.CONVERGE_TIMEOUT_S * 2)
        assert poll() == 0
        for bucket, found in entries.items():
            assert [offset for offset, _, _ in found] == list(range(len(found))), f"{name} {bucket}: no gap"
        assert sum(len(found) for found in entries.values()) == expected_total
        logs[name] = entries
    return logs


def expected_records(rounds: int) -> int:
    """+I for each row's first version, then -U and +U for each later one."""
    return ROWS + (rounds - 1) * 2 * ROWS


class RecoveryChecks:
    """The checks, for a remote store that `delete_snapshot_file` damages; a subclass named
    Test* runs them against its module's server."""

    tables: Any = None
    partition_id: int = -1
    rounds: int = 0

    def snapshot_files(self, server, bucket_dir: str, snapshot_id: int) -> List[str]:
        """The names of snapshot `snapshot_id`'s private files (`kv/{bucket}/snap-{id}/`)."""
        raise NotImplementedError

    def delete_snapshot_file(self, server, bucket_dir: str, snapshot_id: int, name: str) -> None:
        raise NotImplementedError

    # ----- helpers -----

    def bucket_dirs(self) -> Dict[Tuple[int, Optional[int], int], str]:
        """Every bucket of both tables, with its directory name in the remote store."""
        cls = type(self)
        dirs = {}
        for bucket in range(BUCKETS):
            dirs[(cls.tables.plain_id, None, bucket)] = f"t{cls.tables.plain_id}-b{bucket}"
            dirs[(cls.tables.parted_id, cls.partition_id, bucket)] = (
                f"t{cls.tables.parted_id}-p{cls.partition_id}-b{bucket}"
            )
        return dirs

    def local_log_dir(self, server, bucket: Tuple[int, Optional[int], int]) -> Path:
        """Fluss's layout: {data}/{database}/{table}-{table_id}/[{partition}-p{pid}/]log-{bucket}."""
        table_id, partition_id, bucket_id = bucket
        if partition_id is None:
            return server.data_dir / DB / f"plain-{table_id}" / f"log-{bucket_id}"
        return server.data_dir / DB / f"parted-{table_id}" / f"{REGION}-p{partition_id}" / f"log-{bucket_id}"

    def local_log_start(self, server, bucket) -> int:
        offsets = [int(path.stem) for path in self.local_log_dir(server, bucket).glob("*.log")]
        assert offsets, f"no local segment of {bucket}"
        return min(offsets)

    def write_until_the_previous_snapshot_is_below_the_local_log_start(self, runner, server) -> Dict:
        """Writes rounds until, for every bucket, the latest snapshot covers its last write
        and the one before it lies below the local log's start (retention moved past it).
        Bounded: ROUNDS, then at most EXTRA_ROUNDS_MAX more."""
        cls = type(self)
        last: Optional[AssertionError] = None
        for attempt in range(ROUNDS + EXTRA_ROUNDS_MAX):
            write_round(runner, cls.tables, cls.rounds)
            cls.rounds += 1
            if attempt + 1 < ROUNDS:
                # A snapshot tick between rounds: the previous snapshot ends a round.
                time.sleep(ROUND_PAUSE_S)
                continue
            ends = {
                (cls.tables.plain_id if name == "plain" else cls.tables.parted_id,
                 bucket[0], bucket[1]): len(found)
                for name, per_bucket in changelog(
                    runner, cls.tables, cls.partition_id, expected_records(cls.rounds)
                ).items()
                for bucket, found in per_bucket.items()
            }
            assert set(ends) == set(self.bucket_dirs()), f"every bucket was written: {sorted(ends)}"

            def snapshotted() -> Dict:
                snapshots = committed_snapshots(server)
                for bucket, end in ends.items():
                    kept = snapshots.get(bucket, [])
                    assert kept and kept[-1][1] == end, f"{bucket}: latest snapshot {kept[-1:]}, log end {end}"
                    assert len(kept) >= 2, f"{bucket}: one snapshot only"
                return snapshots

            def retained(snapshots: Dict) -> Dict:
                state = {}
                for bucket in ends:
                    latest, previous = snapshots[bucket][-1], snapshots[bucket][-2]
                    start = self.local_log_start(server, bucket)
                    assert previous[1] < start, f"{bucket}: previous snapshot {previous}, local start {start}"
                    state[bucket] = (latest, previous, start)
                return state

            snapshots = support.eventually(snapshotted, "snapshots at the last write", timeout=SETTLE_TIMEOUT_S)
            try:
                return support.eventually(
                    lambda: retained(snapshots), "local retention", timeout=RETENTION_TIMEOUT_S
                )
            except AssertionError as error:
                # A snapshot taken during the round's writes is the previous one now, maybe
                # above the local start: another round moves on.
                last = error
        raise AssertionError(f"after {cls.rounds} rounds: {last}")

    def kill_and_delete_kv_dirs(self, server) -> None:
        server.kill()
        dirs = list((server.data_dir / DB).glob("*/kv-*")) + list((server.data_dir / DB).glob("*/*/kv-*"))
        assert len([d for d in dirs if not d.name.endswith(".restore")]) == 2 * BUCKETS, dirs
        for directory in dirs:
            shutil.rmtree(directory)

    def restart_and_compare(
        self, runner, server, client, before_lookups, before_changelog, watch_metrics: bool = False
    ) -> None:
        """Restarts the node and compares; with `watch_metrics`, /metrics must show buckets
        recovering (with their phase) while the node already serves, and none after."""
        server.start()
        during = ""
        deadline = time.monotonic() + METRICS_WATCH_S
        while watch_metrics and time.monotonic() < deadline:
            during = scrape(server)
            if (recovering_buckets(during) or 0) > 0:
                break
            time.sleep(0.02)
        if watch_metrics:
            assert (recovering_buckets(during) or 0) > 0, f"no recovery seen on /metrics: {during[-2000:]}"
            assert "kvtablet_kv_recovery_phase{" in during, during
        client.reconnect()
        type(self).tables = Tables(runner, client)
        assert lookups(runner, type(self).tables) == before_lookups
        after = changelog(runner, type(self).tables, type(self).partition_id, expected_records(type(self).rounds))
        assert after == before_changelog
        if watch_metrics:
            text = scrape(server)
            assert recovering_buckets(text) == 0, text[-2000:]
            assert "kvtablet_kv_recovery_phase{" not in text, "a finished recovery's series stay"

    # ----- the steps -----

    def test_create_the_tables(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        runner.run(lambda: admin.create_table(PLAIN, plain_descriptor()), "create_table plain")
        runner.run(lambda: admin.create_table(PARTED, parted_descriptor()), "create_table parted")
        runner.run(lambda: admin.create_partition(PARTED, {"region": REGION}), "create_partition")
        infos = runner.run(lambda: admin.list_partition_infos(PARTED), "list_partition_infos")
        cls = type(self)
        cls.partition_id = {info.partition_name: info.partition_id for info in infos}[REGION]
        cls.tables = Tables(runner, client)

    def test_a_node_that_lost_every_kv_directory_recovers_from_snapshots_and_the_log(self, runner, server, client):
        cls = type(self)
        state = self.write_until_the_previous_snapshot_is_below_the_local_log_start(runner, server)
        assert all(start > 0 for _, _, start in state.values()), "retention removed early segments"
        before_lookups = lookups(runner, cls.tables)
        assert all(before_lookups[(name, row)] == row_of(name, row, cls.rounds - 1)
                   for name in ("plain", "parted") for row in range(ROWS)), "every row at its last round"
        before_changelog = changelog(runner, cls.tables, cls.partition_id, expected_records(cls.rounds))
        self.kill_and_delete_kv_dirs(server)
        log_before_restart = len(node_log(server))
        self.restart_and_compare(runner, server, client, before_lookups, before_changelog)
        log = node_log(server)[log_before_restart:]
        recovered = {bucket_of(match, 1): int(match.group(4)) for match in RECOVERED.finditer(log)}
        latest_ids = {bucket: latest[0] for bucket, (latest, _, _) in state.items()}
        assert recovered == latest_ids, f"every bucket recovered from its latest snapshot: {recovered}"

    def test_a_broken_latest_snapshot_falls_back_to_the_previous_one_and_the_remote_log(self, runner, server, client):
        cls = type(self)
        state = self.write_until_the_previous_snapshot_is_below_the_local_log_start(runner, server)
        before_lookups = lookups(runner, cls.tables)
        before_changelog = changelog(runner, cls.tables, cls.partition_id, expected_records(cls.rounds))
        self.kill_and_delete_kv_dirs(server)
        dirs = self.bucket_dirs()
        for bucket, (latest, _, _) in state.items():
            names = [name for name in self.snapshot_files(server, dirs[bucket], latest[0]) if name != "_METADATA"]
            assert names, f"{bucket}: snapshot {latest[0]} has private files"
            self.delete_snapshot_file(server, dirs[bucket], latest[0], sorted(names)[0])
        log_before_restart = len(node_log(server))
        self.restart_and_compare(runner, server, client, before_lookups, before_changelog, watch_metrics=True)
        log = node_log(server)[log_before_restart:]
        broken = {bucket_of(match, 1): int(match.group(4)) for match in BROKEN.finditer(log)}
        latest_ids = {bucket: latest[0] for bucket, (latest, _, _) in state.items()}
        assert broken == latest_ids, f"every bucket's latest snapshot was reported broken: {broken}"
        recovered = {bucket_of(match, 1): match.group(4, 5, 6) for match in RECOVERED.finditer(log)}
        assert set(recovered) == set(dirs), f"every bucket recovered: {sorted(recovered)}"
        for bucket, (latest, previous, local_start) in state.items():
            snapshot_id, log_offset, flushed_offset = (int(value) for value in recovered[bucket])
            assert snapshot_id == previous[0], f"{bucket}: recovered from {snapshot_id}, not {previous}"
            assert log_offset == previous[1] < local_start, f"{bucket}: {log_offset} vs {local_start}"
            # The remote changelog was replayed from the snapshot's offset to the local start.
            assert flushed_offset >= local_start > log_offset, (bucket, flushed_offset, local_start)


@pytest.fixture(scope="module")
def server(kvtablet_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("kvtablet-recovery")
    server = support.Server(kvtablet_bin, root / "data", root / "logs", settings=SETTINGS, env=SERVER_ENV)
    server.settings += metrics_settings(server)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.incremental
class TestKvRecovery(RecoveryChecks):
    """The embedded default: the remote data directory inside the data directory."""

    def snapshot_dir(self, server, bucket_dir: str, snapshot_id: int) -> Path:
        return server.data_dir / "remote" / "kv" / bucket_dir / f"snap-{snapshot_id}"

    def snapshot_files(self, server, bucket_dir: str, snapshot_id: int) -> List[str]:
        return [path.name for path in self.snapshot_dir(server, bucket_dir, snapshot_id).iterdir()]

    def delete_snapshot_file(self, server, bucket_dir: str, snapshot_id: int, name: str) -> None:
        (self.snapshot_dir(server, bucket_dir, snapshot_id) / name).unlink()
