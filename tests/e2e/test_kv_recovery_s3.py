"""Recovery of lost KV engines through pyfluss, with the node's remote data directory in a
bucket of moto's S3-compatible server (as test_tiering_s3 runs it): the same two cases as
test_kv_recovery, the broken snapshot's file deleted from the S3 bucket."""

from __future__ import annotations

from typing import List

import pytest

import e2e_support as support
import test_kv_recovery as recovery
from test_tiering_s3 import BUCKET, CREDENTIALS, Moto, moto  # noqa: F401 - moto is a fixture

PREFIX = "recovery"


@pytest.fixture(scope="module")
def server(kvtablet_bin, tmp_path_factory, moto):  # noqa: F811 - the fixture imported above
    root = tmp_path_factory.mktemp("kvtablet-recovery-s3")
    settings = recovery.SETTINGS + CREDENTIALS + [
        f"remote.data.dir=s3://{BUCKET}/{PREFIX}",
        f"s3.endpoint={moto.endpoint}",
        "s3.region=us-east-1",
        "s3.path.style.access=true",
    ]
    server = support.Server(
        kvtablet_bin, root / "data", root / "logs", settings=settings, env=recovery.SERVER_ENV
    )
    server.settings += recovery.metrics_settings(server)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.incremental
class TestKvRecoveryOnS3(recovery.RecoveryChecks):
    moto_server: Moto = None

    @pytest.fixture(autouse=True)
    def _moto(self, moto):  # noqa: F811 - the fixture imported above
        type(self).moto_server = moto

    def snapshot_prefix(self, bucket_dir: str, snapshot_id: int) -> str:
        return f"{PREFIX}/kv/{bucket_dir}/snap-{snapshot_id}/"

    def snapshot_files(self, server, bucket_dir: str, snapshot_id: int) -> List[str]:
        assert not (server.data_dir / "remote").exists(), "nothing remote on the local disk"
        prefix = self.snapshot_prefix(bucket_dir, snapshot_id)
        return [key[len(prefix):] for key, _ in self.moto_server.object_sizes(prefix)]

    def delete_snapshot_file(self, server, bucket_dir: str, snapshot_id: int, name: str) -> None:
        # moto's server refuses an unsigned DELETE (403); boto3 (moto's own dependency) signs.
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.moto_server.endpoint,
            aws_access_key_id="test-access",
            aws_secret_access_key="test-secret",
            region_name="us-east-1",
        )
        key = self.snapshot_prefix(bucket_dir, snapshot_id) + name
        s3.delete_object(Bucket=BUCKET, Key=key)
        assert name not in self.snapshot_files(server, bucket_dir, snapshot_id), f"{key} is gone"
