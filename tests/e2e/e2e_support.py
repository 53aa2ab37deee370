"""Support for the e2e suite: the kvtablet server process, a bounded asyncio runner, and the
model of the primary-key table the scenario writes.

Nothing here waits without a bound: every wait has a deadline and every server is killed at the
end (and by the watchdog if the whole run overstays).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import fluss
import pyarrow as pa

#: Each bucket's RocksDB memtable in the suite's servers (`kv.rocksdb.writebuffer.size`).
WRITE_BUFFER_SIZE = "4 mb"

#: Seconds a server gets to start listening.
START_TIMEOUT_S = float(os.environ.get("KVTABLET_E2E_START_TIMEOUT", "30"))
#: Seconds pyfluss gets to connect (ApiVersions + bootstrap Metadata).
CONNECT_TIMEOUT_S = float(os.environ.get("KVTABLET_E2E_CONNECT_TIMEOUT", "20"))
#: Seconds any one client call gets.
CALL_TIMEOUT_S = float(os.environ.get("KVTABLET_E2E_CALL_TIMEOUT", "60"))
#: Seconds reads get to catch up with acknowledged writes (the engine is flushed asynchronously).
CONVERGE_TIMEOUT_S = float(os.environ.get("KVTABLET_E2E_CONVERGE_TIMEOUT", "60"))
#: Seconds the whole run may take before the watchdog kills every server and exits.
RUN_TIMEOUT_S = float(os.environ.get("KVTABLET_E2E_RUN_TIMEOUT", "1200"))


class ServerUnavailable(Exception):
    """The server did not start, did not listen, or pyfluss could not talk to it."""


def kvtablet_bin() -> str:
    path = os.environ.get("KVTABLET_BIN")
    if not path:
        raise ServerUnavailable(
            "KVTABLET_BIN is not set: run the suite through scripts/e2e, or export "
            "KVTABLET_BIN=/path/to/kvtablet"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ServerUnavailable(f"KVTABLET_BIN={path} is not an executable file")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_LIVE: List["Server"] = []
_LIVE_LOCK = threading.Lock()


def kill_all_servers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.kill()


def start_watchdog() -> threading.Timer:
    """Ends the run (servers killed, exit code 3) if it lasts longer than RUN_TIMEOUT_S."""

    def expire() -> None:
        sys.stderr.write(
            f"\ne2e watchdog: the run exceeded {RUN_TIMEOUT_S:.0f} s; killing every kvtablet "
            "server and exiting\n"
        )
        sys.stderr.flush()
        kill_all_servers()
        os._exit(3)

    timer = threading.Timer(RUN_TIMEOUT_S, expire)
    timer.daemon = True
    timer.start()
    return timer


class Server:
    """One `kvtablet serve` process on a free 127.0.0.1 port.

    Assumed command line (the listen flag comes with the wire-protocol work):
    ``kvtablet serve --data-dir DIR --listen 127.0.0.1:PORT``.
    """

    def __init__(
        self,
        binary: str,
        data_dir: Path,
        log_dir: Path,
        settings: Optional[List[str]] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.binary = binary
        #: Extra `-D key=value` settings.
        self.settings = list(settings or [])
        #: Extra environment variables of the process (e.g. RUST_LOG).
        self.env = dict(env or {})
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0
        self.log_path: Optional[Path] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> List[str]:
        return [
            self.binary,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
            # RocksDB reserves about 1.1 write buffers of disk per open bucket; the suite opens
            # some 60 buckets per server, which at the 64 MiB default would be gigabytes.
            "-D",
            f"kv.rocksdb.writebuffer.size={WRITE_BUFFER_SIZE}",
        ] + [part for setting in self.settings for part in ("-D", setting)]

    def output_tail(self, max_chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace")
        return text[-max_chars:] if text else "(no output)"

    def start(self) -> None:
        """Starts the server and waits (bounded) until it accepts TCP connections."""
        assert self.process is None, "already running"
        self.starts += 1
        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"kvtablet-{self.starts}.log"
        env = dict(os.environ)
        env.update(self.env)
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE.append(self)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise ServerUnavailable(
                    f"`{' '.join(self.command())}` exited with code {code} before listening "
                    f"(does this kvtablet have `serve --listen`?). Its output:\n{self.output_tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServerUnavailable(
                    f"`{' '.join(self.command())}` did not accept connections on {self.address} "
                    f"within {START_TIMEOUT_S:.0f} s. Its output:\n{self.output_tail()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, like a crash; waits (bounded) for the process to be reaped."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"kvtablet pid {process.pid} survived SIGKILL for 10 s\n")
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    def restart(self) -> None:
        """SIGKILL, then start again on the same data directory (on a new port)."""
        self.kill()
        self.start()

    def assert_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"kvtablet is not running. Its output:\n{self.output_tail()}")


class Runner:
    """One asyncio loop for the whole run; every await is bounded by a timeout.

    pyfluss creates its futures eagerly and needs a running loop when an async method is
    *called* ("RuntimeError: no running event loop" otherwise), so calls are passed as
    zero-argument callables (or native coroutines, which are lazy) and made inside the loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, make: Any, what: str, timeout: float = CALL_TIMEOUT_S) -> Any:
        """Runs `make()` inside the loop (or awaits the coroutine `make`); awaits its result if
        awaitable, for at most `timeout` seconds."""

        async def bounded() -> Any:
            result = make() if callable(make) else make
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
            return result

        try:
            return self.loop.run_until_complete(bounded())
        except asyncio.TimeoutError:
            raise AssertionError(f"{what} did not finish within {timeout:.0f} s") from None

    def gather(
        self, call: Callable[[Any], Awaitable[Any]], items: List[Any], what: str, chunk: int = 500
    ) -> List[Any]:
        """`call(item)` for every item, `chunk` calls at a time concurrently, each chunk bounded."""
        results: List[Any] = []
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]

            async def together(part=part) -> List[Any]:
                return list(await asyncio.gather(*(call(item) for item in part)))

            results.extend(self.run(together(), f"{what} [{start}..{start + len(part)})"))
        return results

    def close(self) -> None:
        self.loop.close()


def connect(runner: Runner, server: Server) -> "fluss.FlussConnection":
    config = fluss.Config({"bootstrap.servers": server.address})
    try:
        return runner.run(
            lambda: fluss.FlussConnection.create(config),
            f"FlussConnection.create({server.address})",
            timeout=CONNECT_TIMEOUT_S,
        )
    except (AssertionError, fluss.FlussError) as error:
        raise ServerUnavailable(
            f"pyfluss could not connect to kvtablet at {server.address}: {error}. The server "
            "listens but did not complete the Fluss handshake (ApiVersions, Metadata): does it "
            f"speak the Fluss wire protocol yet? Server output:\n{server.output_tail()}"
        ) from None


def eventually(check: Callable[[], Any], what: str, timeout: float = CONVERGE_TIMEOUT_S) -> Any:
    """Re-runs `check` until it stops raising AssertionError, for at most `timeout` seconds;
    then re-raises its last failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {timeout:.0f} s: {error}") from error
        time.sleep(0.2)


# ----- the primary-key table of the scenario -----

DATABASE = "e2e"
TABLE = "all_types"
BUCKETS = 4
ROWS = 10_000

COLUMNS: List[Tuple[str, pa.DataType]] = [
    ("k_int", pa.int32()),
    ("k_str", pa.string()),
    ("c_bigint", pa.int64()),
    ("c_double", pa.float64()),
    ("c_bool", pa.bool_()),
    ("c_tiny", pa.int8()),
    ("c_small", pa.int16()),
    ("c_float", pa.float32()),
    ("c_text", pa.string()),
]
COLUMN_NAMES = [name for name, _ in COLUMNS]
PRIMARY_KEY = ["k_int", "k_str"]
BUCKET_KEY = ["k_int"]

Key = Tuple[int, str]
Row = Dict[str, Any]


def table_descriptor() -> "fluss.TableDescriptor":
    schema = fluss.Schema(pa.schema(COLUMNS), primary_keys=PRIMARY_KEY)
    return fluss.TableDescriptor(schema, bucket_count=BUCKETS, bucket_keys=BUCKET_KEY)


def key_of(i: int) -> Key:
    """Ten rows share each bucket-key value; bucket keys run from -500 to 499."""
    return (i // 10 - 500, f"s{i % 10}")


def key_of_row(row: Row) -> Key:
    return (row["k_int"], row["k_str"])


def make_row(i: int, version: int) -> Row:
    """Row `i` as written at `version` (0 first, 1 after the update). Every value survives the
    round trip exactly: floats are exact in float32, text includes non-ASCII, and each nullable
    column is NULL on its own period."""
    k_int, k_str = key_of(i)
    if i == 2:
        bigint = 2**63 - 1 - version
    elif i == 4:
        bigint = -(2**63) + version
    else:
        bigint = (i * 1_000_000_007 + version) * (-1 if i % 2 else 1)
    return {
        "k_int": k_int,
        "k_str": k_str,
        "c_bigint": None if i % 13 == 0 else bigint,
        "c_double": None if i % 17 == 0 else i / 3 - version * 1e10,
        "c_bool": None if i % 11 == 0 else (i + version) % 2 == 0,
        "c_tiny": None if i % 19 == 0 else (i + version) % 256 - 128,
        "c_small": None if i % 23 == 0 else (i * 7 + version) % 65536 - 32768,
        "c_float": None if i % 29 == 0 else (i % 1000) * 0.25 - 100 + version,
        "c_text": None if i % 7 == 0 else f"row-{i}-v{version}" + ("é🙂" if i % 9 == 0 else ""),
    }


def is_updated(i: int) -> bool:
    return i % 3 == 0


def is_deleted(i: int) -> bool:
    return i % 10 == 1


def final_version(i: int) -> int:
    return 1 if is_updated(i) else 0


def expected_state() -> Dict[Key, Row]:
    return {key_of(i): make_row(i, final_version(i)) for i in range(ROWS) if not is_deleted(i)}


Change = Tuple[str, Row]


def expected_changes_by_phase() -> List[List[Tuple[Key, Change]]]:
    """The changelog the three write phases produce, phase by phase, in write order."""
    inserts = [(key_of(i), ("+I", make_row(i, 0))) for i in range(ROWS)]
    updates: List[Tuple[Key, Change]] = []
    for i in range(ROWS):
        if is_updated(i):
            updates.append((key_of(i), ("-U", make_row(i, 0))))
            updates.append((key_of(i), ("+U", make_row(i, 1))))
    deletes = [
        (key_of(i), ("-D", make_row(i, final_version(i)))) for i in range(ROWS) if is_deleted(i)
    ]
    return [inserts, updates, deletes]


def expected_changelog(bucket_of: Dict[Key, int]) -> Dict[int, List[Change]]:
    """Per bucket: each phase's changes of the bucket's keys, in write order (a bucket's log is
    ordered; writes of one phase were acknowledged before the next phase began)."""
    per_bucket: Dict[int, List[Change]] = {bucket: [] for bucket in range(BUCKETS)}
    for phase in expected_changes_by_phase():
        for key, change in phase:
            per_bucket[bucket_of[key]].append(change)
    return per_bucket


def project(row: Row, columns: List[str]) -> Row:
    return {name: row[name] for name in columns}


def sort_rows(rows: List[Row]) -> List[Row]:
    return sorted(rows, key=key_of_row)


def first_difference(actual: List[Any], expected: List[Any]) -> str:
    for index, (got, want) in enumerate(zip(actual, expected)):
        if got != want:
            return f"first difference at {index}: got {got!r}, expected {want!r}"
    return f"lengths differ: got {len(actual)}, expected {len(expected)}"


def run_scan_cli(
    binary: str, server: Server, database: str, table: str, bucket: int, timeout: float,
    partition: Optional[str] = None,
) -> List[Row]:
    """`kvtablet scan`: a full ScanKv of one bucket, one JSON object
    per row per line, keyed by column name, NULL as null."""
    command = [
        binary,
        "scan",
        "--server",
        server.address,
        "--database",
        database,
        "--table",
        table,
        "--bucket",
        str(bucket),
    ] + (["--partition", partition] if partition is not None else [])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`{' '.join(command)}` did not finish within {timeout:.0f} s")
    if done.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stderr[-4000:]}"
        )
    rows = []
    for number, line in enumerate(done.stdout.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise AssertionError(f"line {number} of `kvtablet scan` is not JSON: {line!r}: {error}")
    return rows
