"""Changelog tiering through pyfluss: a node with small segments and short snapshot and tiering
intervals uploads closed segments to its remote data directory and deletes them locally, so
its local changelog stays bounded while pyfluss still reads the whole changelog from the
earliest offset, before and after a SIGKILL: the tiered range read by the client itself from the
remote data directory (the node answers FetchLog below its local log start with the segments'
location, as Fluss does), never through the node, which `/metrics` counts."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from typing import Any, Dict, List

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "e2e_tiering"
PATH = fluss.TablePath(DB, "history")
SEGMENT_BYTES = 4 * 1024
SETTINGS = [
    f"log.segment.file-size={SEGMENT_BYTES // 1024} kb",
    "remote.log.task-interval-duration=200 ms",
    "kv.snapshot.interval=200 ms",
    "table.log.tiered.local-segments=1",
]
ROWS = 100
ROUNDS = 20
#: +I for each row's first version, then -U and +U for each later one.
EXPECTED_RECORDS = ROWS + (ROUNDS - 1) * 2 * ROWS
#: The active segment and one closed one, each at most one batch over the segment size, with
#: slack for the writers and epoch files.
LOCAL_BYTES_MAX = 8 * 64 * 1024


THROUGH_NODE_BYTES = "kvtablet_remote_log_served_through_node_bytes"
SENT_TO_REMOTE = "kvtablet_remote_log_fetches_sent_to_remote"


def with_metrics(settings: List[str]) -> tuple:
    """`settings` plus /metrics on a port of its own, kept across restarts."""
    port = support.free_port()
    return settings + [f"metrics.listen=127.0.0.1:{port}"], port


def metric(server, name: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200, f"/metrics answered {response.status}"
    finally:
        connection.close()
    match = re.search(rf"^{name} (\d+)$", text, re.M)
    assert match, f"no {name} in /metrics:\n{text[:2000]}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def server(kvtablet_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("kvtablet-tiering")
    settings, metrics_port = with_metrics(SETTINGS)
    server = support.Server(kvtablet_bin, root / "data", root / "logs", settings=settings)
    server.metrics_port = metrics_port
    server.start()
    try:
        yield server
    finally:
        server.kill()


def descriptor() -> "fluss.TableDescriptor":
    schema = fluss.Schema(pa.schema([("id", pa.int32()), ("body", pa.string())]), primary_keys=["id"])
    return fluss.TableDescriptor(schema, bucket_count=1)


def body(row: int, round_: int) -> str:
    return f"round {round_} row {row} " + "x" * 150


def changelog(runner, table) -> List[tuple]:
    scanner = runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
    runner.run(lambda: scanner.subscribe_buckets({0: fluss.EARLIEST_OFFSET}), "subscribe_buckets")
    entries: List[tuple] = []

    def complete() -> None:
        records = runner.run(lambda: scanner.poll(500), "LogScanner.poll")
        for bucket_records in records.values():
            for record in bucket_records:
                entries.append((record.offset, record.change_type.short_string(), dict(record.row)))
        assert len(entries) >= EXPECTED_RECORDS, f"{len(entries)} of {EXPECTED_RECORDS} records so far"

    support.eventually(complete, "reading the whole changelog", timeout=support.CONVERGE_TIMEOUT_S * 2)
    assert len(entries) == EXPECTED_RECORDS
    assert [offset for offset, _, _ in entries] == list(range(EXPECTED_RECORDS)), "no gap, no repeat"
    return entries


def local_log_start(data_dir: Path) -> int:
    """The first offset the bucket's local changelog still holds: its first segment's name."""
    segments = [int(f.stem) for f in data_dir.glob("*/*/log-0/*.log") if f.stem.isdigit()]
    assert segments, f"no local segment under {data_dir}"
    return min(segments)


def read_past_local_start(runner, server, table) -> List[tuple]:
    """The whole changelog, whose tiered part (below the local log start) the client read from
    the remote tier itself: the node served none of it."""
    local_start = local_log_start(server.data_dir)
    assert local_start > 0, "local retention has not run: nothing to read remotely"
    sent_before = metric(server, SENT_TO_REMOTE)
    entries = changelog(runner, table)
    assert entries[0][0] == 0 < local_start
    assert metric(server, THROUGH_NODE_BYTES) == 0, "the node served a tiered range itself"
    assert metric(server, SENT_TO_REMOTE) > sent_before, "no fetch was sent to the remote tier"
    return entries


def local_log_bytes(data_dir: Path) -> int:
    """Every bucket's local changelog: Fluss's layout, {database}/{table}-{id}/log-{bucket}."""
    return sum(f.stat().st_size for f in data_dir.glob("*/*/log-*/*") if f.is_file())


class TieringChecks:
    """The checks, for a remote data directory that `remote_log_bytes` measures; a subclass
    named Test* runs them against its module's server."""

    table: Any = None
    entries: List[tuple] = []

    def remote_log_bytes(self, server) -> int:
        raise NotImplementedError

    def test_write_rounds_of_updates(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        runner.run(lambda: admin.create_table(PATH, descriptor()), "create_table")
        table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        for round_ in range(ROUNDS):
            async def write(round_=round_) -> None:
                writer = table.new_upsert().create_writer()
                for row in range(ROWS):
                    writer.upsert({"id": row, "body": body(row, round_)})
                await writer.flush()

            runner.run(write(), f"round {round_}")
        type(self).table = table

    def test_local_changelog_stays_bounded_while_the_remote_tier_holds_the_history(self, server):
        def bounded() -> Dict[str, int]:
            local, remote = local_log_bytes(server.data_dir), self.remote_log_bytes(server)
            assert remote > 0, "nothing tiered yet"
            assert local <= LOCAL_BYTES_MAX, f"{local} bytes of local changelog ({remote} remote)"
            return {"local": local, "remote": remote}

        sizes = support.eventually(bounded, "local retention after tiering")
        assert sizes["remote"] > sizes["local"], sizes

    def test_the_whole_changelog_reads_from_the_earliest_offset_with_the_tiered_range_read_by_the_client(
        self, runner, server
    ):
        entries = read_past_local_start(runner, server, type(self).table)
        final = {}
        for _, change, row in entries:
            if change in ("+I", "+U"):
                final[row["id"]] = row["body"]
        assert final == {row: body(row, ROUNDS - 1) for row in range(ROWS)}
        type(self).entries = entries

    def test_the_changelog_reads_whole_again_after_a_kill(self, runner, server, client):
        server.restart()
        client.reconnect()
        table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        assert read_past_local_start(runner, server, table) == type(self).entries


@pytest.mark.incremental
class TestTiering(TieringChecks):
    """The embedded default: the remote data directory inside the data directory."""

    def remote_log_bytes(self, server) -> int:
        return sum(f.stat().st_size for f in (server.data_dir / "remote" / "log").glob("*/*.log"))
