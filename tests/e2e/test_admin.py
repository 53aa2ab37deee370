"""Admin RPCs through pyfluss: databases, tables, their error codes, and the catalog surviving a
SIGKILL of the node."""

from __future__ import annotations

import fluss
import pyarrow as pa
import pytest

DB = "e2e_admin"


def simple_descriptor(**kwargs) -> "fluss.TableDescriptor":
    schema = fluss.Schema(pa.schema([("id", pa.int32()), ("name", pa.string())]), primary_keys=["id"])
    return fluss.TableDescriptor(schema, **kwargs)


def expect_error(runner, call, code: int, what: str) -> "fluss.FlussError":
    with pytest.raises(fluss.FlussError) as caught:
        runner.run(call, what)
    assert caught.value.error_code == code, f"{what}: expected code {code}, got {caught.value}"
    return caught.value


@pytest.mark.incremental
class TestAdmin:
    ids: dict = {}

    def test_server_nodes_name_this_server(self, runner, client, server):
        nodes = runner.run(lambda: client.admin.get_server_nodes(), "get_server_nodes")
        assert nodes, "no server nodes"
        for node in nodes:
            assert (node.host, node.port) == ("127.0.0.1", server.port), repr(node)
        assert any(node.server_type == "TabletServer" for node in nodes), nodes

    def test_a_fresh_node_has_the_default_database(self, runner, client):
        # Fluss's coordinator creates `fluss` when no database exists; clients use it unasked.
        admin = client.admin
        assert runner.run(lambda: admin.list_databases(), "list_databases") == ["fluss"]
        path = fluss.TablePath("fluss", "in_default")
        runner.run(lambda: admin.create_table(path, simple_descriptor()), "create_table in fluss")
        assert runner.run(lambda: admin.list_tables("fluss"), "list_tables") == ["in_default"]
        runner.run(lambda: admin.drop_table(path), "drop_table")

    def test_databases(self, runner, client):
        admin = client.admin
        assert not runner.run(lambda: admin.database_exists(DB), "database_exists")
        descriptor = fluss.DatabaseDescriptor(comment="e2e admin", custom_properties={"k": "v"})
        runner.run(lambda: admin.create_database(DB, descriptor), "create_database")
        assert runner.run(lambda: admin.database_exists(DB), "database_exists")
        assert DB in runner.run(lambda: admin.list_databases(), "list_databases")
        expect_error(runner, lambda: admin.create_database(DB), fluss.ErrorCode.DATABASE_ALREADY_EXIST, "create twice")
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create ignore_if_exists")
        info = runner.run(lambda: admin.get_database_info(DB), "get_database_info")
        assert info.database_name == DB
        assert info.get_database_descriptor().comment == "e2e admin"
        assert info.get_database_descriptor().get_custom_properties() == {"k": "v"}
        assert info.created_time > 0
        expect_error(runner, lambda: admin.get_database_info("e2e_missing"), fluss.ErrorCode.DATABASE_NOT_EXIST, "info of missing")
        expect_error(runner, lambda: admin.list_tables("e2e_missing"), fluss.ErrorCode.DATABASE_NOT_EXIST, "list missing")
        expect_error(runner, lambda: admin.drop_database("e2e_missing"), fluss.ErrorCode.DATABASE_NOT_EXIST, "drop missing")
        runner.run(lambda: admin.drop_database("e2e_missing", ignore_if_not_exists=True), "drop missing, ignored")

    def test_tables(self, runner, client):
        admin = client.admin
        path = fluss.TablePath(DB, "simple")
        assert not runner.run(lambda: admin.table_exists(path), "table_exists")
        runner.run(lambda: admin.create_table(path, simple_descriptor()), "create_table")
        assert runner.run(lambda: admin.table_exists(path), "table_exists")
        assert runner.run(lambda: admin.list_tables(DB), "list_tables") == ["simple"]
        info = runner.run(lambda: admin.get_table_info(path), "get_table_info")
        assert info.num_buckets >= 1, "a bucket count is filled in by default"
        assert info.get_primary_keys() == ["id"]
        assert info.get_bucket_keys() == ["id"]
        assert info.get_column_names() == ["id", "name"]
        assert info.schema_id == 1
        assert info.has_primary_key() and not info.is_partitioned()
        # Fluss's coordinator adds the KV format version to a primary-key table that has none.
        assert info.get_properties().get("table.kv.format-version") == "2", info.get_properties()
        self.ids["simple"] = info.table_id
        expect_error(runner, lambda: admin.create_table(path, simple_descriptor()), fluss.ErrorCode.TABLE_ALREADY_EXIST, "create twice")
        runner.run(lambda: admin.create_table(path, simple_descriptor(bucket_count=3), ignore_if_exists=True), "create ignored")
        again = runner.run(lambda: admin.get_table_info(path), "get_table_info")
        assert (again.table_id, again.num_buckets) == (info.table_id, info.num_buckets)

        missing = fluss.TablePath(DB, "missing")
        expect_error(runner, lambda: admin.get_table_info(missing), fluss.ErrorCode.TABLE_NOT_EXIST, "info of missing")
        expect_error(runner, lambda: admin.drop_table(missing), fluss.ErrorCode.TABLE_NOT_EXIST, "drop missing")
        runner.run(lambda: admin.drop_table(missing, ignore_if_not_exists=True), "drop missing, ignored")
        assert not runner.run(lambda: admin.table_exists(missing), "table_exists")
        in_missing_db = fluss.TablePath("e2e_missing", "t")
        expect_error(runner, lambda: admin.create_table(in_missing_db, simple_descriptor()), fluss.ErrorCode.DATABASE_NOT_EXIST, "create in missing db")

    def test_refused_tables(self, runner, client):
        admin = client.admin
        log_table = fluss.TableDescriptor(fluss.Schema(pa.schema([("id", pa.int32())])))
        expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "log"), log_table), fluss.ErrorCode.INVALID_TABLE_EXCEPTION, "log table")
        partitioned_outside_key = fluss.TableDescriptor(
            fluss.Schema(pa.schema([("id", pa.int32()), ("day", pa.string())]), primary_keys=["id"]),
            partition_keys=["day"],
        )
        expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "part"), partitioned_outside_key), fluss.ErrorCode.INVALID_TABLE_EXCEPTION, "partition key outside the primary key")
        expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "zero"), simple_descriptor(bucket_count=0)), fluss.ErrorCode.INVALID_CONFIG_EXCEPTION, "0 buckets")
        expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "lake"), simple_descriptor(properties={"table.datalake.enabled": "true"})), fluss.ErrorCode.INVALID_CONFIG_EXCEPTION, "lake tiering")
        auto_increment = fluss.TableDescriptor(
            fluss.Schema(pa.schema([("id", pa.int32()), ("seq", pa.int64())]), primary_keys=["id"], auto_increment_column="seq")
        )
        refused = expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "auto"), auto_increment), fluss.ErrorCode.INVALID_TABLE_EXCEPTION, "auto-increment column")
        assert "auto-increment" in str(refused), refused
        for name in ["log", "part", "zero", "lake", "auto"]:
            assert not runner.run(lambda: admin.table_exists(fluss.TablePath(DB, name)), "table_exists")

    def test_table_ids_increase_and_are_not_reused(self, runner, client):
        admin = client.admin
        path = fluss.TablePath(DB, "second")
        runner.run(lambda: admin.create_table(path, simple_descriptor(bucket_count=2)), "create_table")
        second = runner.run(lambda: admin.get_table_info(path), "get_table_info")
        assert second.table_id > self.ids["simple"]
        assert second.num_buckets == 2
        runner.run(lambda: admin.drop_table(path), "drop_table")
        assert not runner.run(lambda: admin.table_exists(path), "table_exists")
        self.ids["dropped"] = second.table_id

    def test_catalog_survives_sigkill(self, runner, client, server):
        server.restart()
        client.reconnect()
        admin = client.admin
        assert runner.run(lambda: admin.database_exists(DB), "database_exists after restart")
        assert runner.run(lambda: admin.list_tables(DB), "list_tables after restart") == ["simple"]
        info = runner.run(lambda: admin.get_table_info(fluss.TablePath(DB, "simple")), "get_table_info")
        assert info.table_id == self.ids["simple"]
        path = fluss.TablePath(DB, "third")
        runner.run(lambda: admin.create_table(path, simple_descriptor()), "create_table after restart")
        third = runner.run(lambda: admin.get_table_info(path), "get_table_info")
        assert third.table_id > self.ids["dropped"], "a table id was reused after a restart"

    def test_drop_database(self, runner, client):
        admin = client.admin
        expect_error(runner, lambda: admin.drop_database(DB, cascade=False), fluss.ErrorCode.DATABASE_NOT_EMPTY, "non-cascade drop")
        assert runner.run(lambda: admin.table_exists(fluss.TablePath(DB, "simple")), "table_exists")
        runner.run(lambda: admin.drop_database(DB, cascade=True), "cascade drop")
        assert not runner.run(lambda: admin.database_exists(DB), "database_exists")
        assert DB not in runner.run(lambda: admin.list_databases(), "list_databases")
        assert not runner.run(lambda: admin.table_exists(fluss.TablePath(DB, "simple")), "table_exists")
