"""Fixtures of the e2e suite: a kvtablet server per test module, a pyfluss connection to it,
one bounded asyncio runner, and a watchdog over the whole run."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import pytest

import e2e_support as support

# Once a server could not be started or reached, every later module fails at once with the
# same message instead of waiting for its own timeouts.
_unavailable: Optional[str] = None


def _fail_unavailable(message: str) -> None:
    global _unavailable
    _unavailable = message
    pytest.fail(f"kvtablet is not reachable: {message}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def watchdog():
    timer = support.start_watchdog()
    yield
    timer.cancel()
    support.kill_all_servers()


@pytest.fixture(scope="session")
def kvtablet_bin() -> str:
    failure = None
    try:
        return support.kvtablet_bin()
    except support.ServerUnavailable as error:
        failure = str(error)
    _fail_unavailable(failure)


@pytest.fixture(scope="session")
def runner():
    runner = support.Runner()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def server(kvtablet_bin, tmp_path_factory):
    """A fresh `kvtablet serve` on a free port with its own data directory; always killed."""
    if _unavailable is not None:
        pytest.fail(f"kvtablet is not reachable (see the first failure): {_unavailable}", pytrace=False)
    root = tmp_path_factory.mktemp("kvtablet")
    server = support.Server(kvtablet_bin, root / "data", root / "logs")
    try:
        failure = None
        try:
            server.start()
        except support.ServerUnavailable as error:
            failure = str(error)
        if failure is not None:
            _fail_unavailable(failure)
        yield server
    finally:
        server.kill()


class Client:
    """The module's pyfluss connection; `reconnect` after the server restarts on a new port."""

    def __init__(self, runner: support.Runner, server: support.Server) -> None:
        self.runner = runner
        self.server = server
        self.connection = None
        self.reconnect()

    def reconnect(self) -> None:
        self.close()
        failure = None
        try:
            self.connection = support.connect(self.runner, self.server)
        except support.ServerUnavailable as error:
            failure = str(error)
        if failure is not None:
            _fail_unavailable(failure)

    @property
    def admin(self):
        # Usually read inside a `runner.run(lambda: client.admin....)` call, i.e. with the loop
        # already running, where a nested `run_until_complete` would raise.
        if self.runner.loop.is_running():
            return self.connection.get_admin()
        return self.runner.run(lambda: self.connection.get_admin(), "get_admin")

    def close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:
                self.runner.run(lambda: connection.close(), "FlussConnection.close", timeout=10)
            except Exception:  # noqa: BLE001 - closing a connection to a killed server may fail
                pass


@pytest.fixture(scope="module")
def client(runner, server):
    client = Client(runner, server)
    yield client
    client.close()


# ----- incremental scenarios: after a failed step the later steps of the class are skipped -----

_failed_steps: Dict[Tuple[str, str], str] = {}


def pytest_runtest_makereport(item, call):
    if "incremental" in item.keywords and call.excinfo is not None and call.when in ("setup", "call"):
        if not call.excinfo.errisinstance(pytest.skip.Exception):
            _failed_steps.setdefault((str(item.fspath), item.cls.__name__ if item.cls else ""), item.name)


def pytest_runtest_setup(item):
    if "incremental" in item.keywords:
        failed = _failed_steps.get((str(item.fspath), item.cls.__name__ if item.cls else ""))
        if failed is not None:
            pytest.skip(f"an earlier step of this scenario failed: {failed}")
