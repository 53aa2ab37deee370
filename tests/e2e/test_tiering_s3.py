"""Changelog tiering to S3 through pyfluss: the same checks as test_tiering, with the node's
remote data directory in a bucket of moto's S3-compatible server (from the venv that
scripts/venv makes), started on a loopback port for this module and stopped after it."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from typing import Iterator, List

import pytest

import e2e_support as support
import test_tiering as tiering

BUCKET = "kvtablet-e2e"
PREFIX = "tiering"
#: moto checks no signature; the node still signs with these.
CREDENTIALS = ["s3.access-key=test-access", "s3.secret-key=test-secret"]
MOTO_START_S = 30.0
#: moto ends itself after this, or as soon as the test process is gone.
MOTO_LIFETIME_MAX_S = 900
#: Listing pages read at most (1,000 keys each).
LIST_PAGES_MAX = 100

MOTO_SCRIPT = f"""
import os, sys, threading, time
parent = os.getppid()
started = time.monotonic()
def watchdog():
    while os.getppid() == parent and time.monotonic() - started < {MOTO_LIFETIME_MAX_S}:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
from moto.server import main
main(['-H', '127.0.0.1', '-p', sys.argv[1]])
"""


class Moto:
    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.port = port
        self.process = process

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers={"Content-Length": "0"})
            response = connection.getresponse()
            body = response.read().decode()
            assert response.status == 200, f"{method} {path}: {response.status} {body[:500]}"
            return body
        finally:
            connection.close()

    def object_sizes(self, prefix: str) -> List[tuple]:
        """(key, size) of every object under `prefix`, by ListObjectsV2."""
        objects: List[tuple] = []
        token = ""
        for _ in range(LIST_PAGES_MAX):
            query = f"/{BUCKET}?list-type=2&prefix={prefix}"
            if token:
                query += f"&continuation-token={token}"
            body = self.request("GET", query)
            for key, size in re.findall(r"<Key>([^<]*)</Key>.*?<Size>(\d+)</Size>", body, re.S):
                objects.append((key, int(size)))
            match = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
            if not match:
                return objects
            token = match.group(1)
        raise AssertionError(f"more than {LIST_PAGES_MAX} pages of objects under {prefix}")


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    port = support.free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT, str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        server = Moto(port, process)
        deadline = time.monotonic() + MOTO_START_S
        while True:
            assert process.poll() is None, f"moto exited with {process.returncode}"
            try:
                server.request("PUT", f"/{BUCKET}")
                break
            except (OSError, http.client.HTTPException):
                assert time.monotonic() < deadline, "moto did not answer"
                time.sleep(0.1)
        yield server
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(kvtablet_bin, tmp_path_factory, moto):
    root = tmp_path_factory.mktemp("kvtablet-tiering-s3")
    settings = tiering.SETTINGS + CREDENTIALS + [
        f"remote.data.dir=s3://{BUCKET}/{PREFIX}",
        f"s3.endpoint={moto.endpoint}",
        "s3.region=us-east-1",
        "s3.path.style.access=true",
    ]
    settings, metrics_port = tiering.with_metrics(settings)
    server = support.Server(kvtablet_bin, root / "data", root / "logs", settings=settings)
    server.metrics_port = metrics_port
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.incremental
class TestTieringOnS3(tiering.TieringChecks):
    moto_server: Moto = None

    @pytest.fixture(autouse=True)
    def _moto(self, moto):
        type(self).moto_server = moto

    def remote_log_bytes(self, server) -> int:
        objects = self.moto_server.object_sizes(f"{PREFIX}/log/")
        assert not (server.data_dir / "remote").exists(), "nothing remote on the local disk"
        # The segments, not the clients' copies beside them (`….copy/{offset}.log`).
        return sum(size for key, size in objects if re.fullmatch(r".*/log/[^/]+/[^/]+\.log", key))
