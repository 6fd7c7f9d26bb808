# tests/python/test_lib_asyncpg.py: asyncpg against a real PostgreSQL server (started by
# tests/python/services.py) on asyncio's loop and on PyLoop, with the same assertions: typed
# queries, prepared statements, transactions, cursors, COPY both ways, LISTEN/NOTIFY, a pool
# under concurrency, queries cancelled by a timeout and by task cancellation (asyncpg then sends
# PostgreSQL's cancel request over a second connection), and close.

import asyncio
import datetime
import decimal
import io
import json
import os
import ssl
import time
import uuid

import asyncpg
import pytest


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def connect(server, **kwargs):
    return asyncpg.connect(server.dsn, **kwargs)


def test_connect_and_typed_queries(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            assert conn.get_server_version().major >= 11
            ident = uuid.uuid4()
            when = datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc)
            row = await conn.fetchrow(
                "SELECT $1::int AS i, $2::text AS t, $3::numeric AS n, $4::timestamptz AS ts,"
                " $5::uuid AS u, $6::bytea AS b, $7::int[] AS a, $8::bool AS f, NULL AS z",
                42, "žluť", decimal.Decimal("3.14159"), when, ident, b"\x00\xff", [1, 2, 3], True)
            assert dict(row) == {"i": 42, "t": "žluť", "n": decimal.Decimal("3.14159"),
                                 "ts": when, "u": ident, "b": b"\x00\xff", "a": [1, 2, 3],
                                 "f": True, "z": None}
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                      schema="pg_catalog")
            assert await conn.fetchval("SELECT $1::jsonb", {"k": [1, None]}) == {"k": [1, None]}
            rows = await conn.fetch("SELECT g, g * g AS sq FROM generate_series(1, 2000) g")
            assert len(rows) == 2000 and rows[-1]["sq"] == 4_000_000
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.execute("SELECT * FROM no_such_table")
            with pytest.raises(asyncpg.DataError):
                await conn.fetchval("SELECT $1::int", "not an int")
            assert await conn.fetchval("SELECT 1") == 1  # the connection survives both errors
        finally:
            await conn.close()

    loop.run_until_complete(main())


def test_tls_and_unix_socket(loop, postgres_server):
    # TLS is negotiated inside PostgreSQL's protocol (an SSLRequest message, then the handshake
    # on the same connection): asyncpg connects in plain TCP and upgrades with loop.start_tls().
    async def main():
        ctx = ssl.create_default_context(cafile=postgres_server.ca_file)
        secure = await connect(postgres_server, ssl=ctx)
        required = await asyncpg.connect(postgres_server.dsn + "?sslmode=require")
        plain = await connect(postgres_server, ssl=False)
        unix = await asyncpg.connect(host=postgres_server.socket_dir, port=postgres_server.port,
                                     user=postgres_server.user,
                                     database=postgres_server.database)
        conns = (secure, required, plain, unix)
        try:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ssl_in_use = [await c.fetchval(query) for c in conns]
            big = "x" * (2 << 20)  # many TLS records each way
            assert await secure.fetchval("SELECT $1::text", big) == big
            assert await unix.fetchval("SELECT $1::text", big) == big
            assert await secure.fetchval("SELECT inet_server_addr()") is not None
            assert await unix.fetchval("SELECT inet_server_addr()") is None  # a Unix socket
            return ssl_in_use
        finally:
            for c in conns:
                await c.close()

    assert loop.run_until_complete(main()) == [True, True, False, False]


def test_prepared_statements_and_executemany(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            stmt = await conn.prepare("SELECT $1::int * 2 AS doubled, $2::text AS label")
            assert [a.name for a in stmt.get_attributes()] == ["doubled", "label"]
            assert [await stmt.fetchval(i, "x") for i in range(5)] == [0, 2, 4, 6, 8]
            assert (await stmt.fetchrow(21, "y"))["label"] == "y"
            await conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text)")
            await conn.executemany("INSERT INTO items VALUES ($1, $2)",
                                   [(i, f"item{i}") for i in range(500)])
            assert await conn.fetchval("SELECT count(*) FROM items") == 500
            assert await conn.fetchval("SELECT name FROM items WHERE id = $1", 321) == "item321"
        finally:
            await conn.close()

    loop.run_until_complete(main())


def test_transactions_and_rollback(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            await conn.execute("CREATE TEMP TABLE t (v int)")
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (2)")
                    1 / 0
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (3)")
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute("INSERT INTO t VALUES (4)")
                        await conn.execute("INSERT INTO t VALUES ('four')")
                except asyncpg.InvalidTextRepresentationError:
                    pass
            tr = conn.transaction(isolation="serializable")
            await tr.start()
            await conn.execute("INSERT INTO t VALUES (5)")
            await tr.rollback()
            assert not conn.is_in_transaction()
            return [r["v"] for r in await conn.fetch("SELECT v FROM t ORDER BY v")]
        finally:
            await conn.close()

    assert loop.run_until_complete(main()) == [1, 3]


def test_cursors(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            async with conn.transaction():
                total = 0
                async for row in conn.cursor("SELECT g FROM generate_series(1, 1000) g",
                                             prefetch=64):
                    total += row["g"]
                cur = await conn.cursor("SELECT g FROM generate_series(1, 100) g")
                first = [r["g"] for r in await cur.fetch(5)]
                await cur.forward(10)
                after = await cur.fetchrow()
            return total, first, after["g"]
        finally:
            await conn.close()

    assert loop.run_until_complete(main()) == (500500, [1, 2, 3, 4, 5], 16)


def test_copy_in_and_out(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            await conn.execute("CREATE TEMP TABLE c (id int, name text)")
            records = [(i, f"name {i}") for i in range(5000)]
            assert await conn.copy_records_to_table("c", records=records) == "COPY 5000"

            async def chunks():
                for i in range(5000, 5100):
                    yield f"{i}\tstreamed {i}\n".encode()

            assert await conn.copy_to_table("c", source=chunks()) == "COPY 100"
            out = io.BytesIO()
            status = await conn.copy_from_query(
                "SELECT id, name FROM c ORDER BY id", output=out, format="csv")
            lines = out.getvalue().decode().splitlines()
            assert status == "COPY 5100" and len(lines) == 5100
            assert lines[0] == "0,name 0" and lines[-1] == "5099,streamed 5099"

            received = []

            async def sink(data):
                received.append(data)

            await conn.copy_from_table("c", output=sink, columns=["id"])
            assert b"".join(received).split() == [str(i).encode() for i in range(5100)]
        finally:
            await conn.close()

    loop.run_until_complete(main())


def test_copy_flow_control(loop, postgres_server):
    # Megabytes each way: COPY IN fills the transport's write buffer (asyncpg waits for the
    # protocol's resume_writing), and a slow COPY OUT sink makes asyncpg pause the transport's
    # reading until the sink catches up.
    async def main():
        conn = await connect(postgres_server)
        try:
            await conn.execute("CREATE TEMP TABLE big (id int, payload text)")
            line = "p" * 1000

            async def chunks():
                for start in range(0, 12000, 1000):
                    yield "".join(f"{i}\t{line}\n" for i in range(start, start + 1000)).encode()

            assert await conn.copy_to_table("big", source=chunks()) == "COPY 12000"
            received = bytearray()
            pauses = 0

            async def slow_sink(data):
                nonlocal pauses
                received.extend(data)
                if len(received) // (1 << 20) > pauses:  # one pause per MiB
                    pauses += 1
                    await asyncio.sleep(0.02)

            status = await conn.copy_from_query("SELECT id, payload FROM big ORDER BY id",
                                                output=slow_sink)
            rows = bytes(received).split(b"\n")[:-1]
            assert status == "COPY 12000" and len(rows) == 12000
            assert rows[11999] == f"11999\t{line}".encode()
            assert pauses >= 10
            assert await conn.fetchval("SELECT sum(length(payload)) FROM big") == 12_000_000
        finally:
            await conn.close()

    loop.run_until_complete(main())


def test_listen_notify(loop, postgres_server):
    async def main():
        listener = await connect(postgres_server)
        notifier = await connect(postgres_server)
        got = []
        done = asyncio.get_running_loop().create_future()

        def on_notify(conn, pid, channel, payload):
            got.append((channel, payload, pid == notifier.get_server_pid()))
            if len(got) == 3 and not done.done():
                done.set_result(None)

        try:
            await listener.add_listener("pyloop_events", on_notify)
            for i in range(3):
                await notifier.execute("SELECT pg_notify('pyloop_events', $1)", f"p{i}")
            await asyncio.wait_for(done, 5)
            await listener.remove_listener("pyloop_events", on_notify)
        finally:
            await notifier.close()
            await listener.close()
        return got

    assert loop.run_until_complete(main()) == [("pyloop_events", f"p{i}", True) for i in range(3)]


def test_pool_concurrent_queries(loop, postgres_server):
    async def main():
        async with asyncpg.create_pool(postgres_server.dsn, min_size=2, max_size=6) as pool:
            async def query(i):
                async with pool.acquire() as conn:
                    return await conn.fetchval("SELECT $1::int FROM pg_sleep(0.005)", i)

            started = time.monotonic()
            results = await asyncio.gather(*(query(i) for i in range(120)))
            elapsed = time.monotonic() - started
            assert results == list(range(120))
            assert pool.get_size() <= 6
            assert await pool.fetchval("SELECT count(*) FROM generate_series(1, 10)") == 10
            # 120 sleeps of 5 ms on up to 6 connections at once: well under one at a time.
            assert elapsed < 120 * 0.005 * 2

    loop.run_until_complete(main())


def test_query_cancelled_by_timeout(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        try:
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetchval("SELECT pg_sleep(10)", timeout=0.2)
            assert time.monotonic() - started < 5
            # The server really cancelled it: the connection answers at once.
            assert await conn.fetchval("SELECT 7") == 7
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(10)"), 0.2)
            assert await conn.fetchval("SELECT 8") == 8
            assert time.monotonic() - started < 8
        finally:
            await conn.close()

    loop.run_until_complete(main())


def test_query_cancelled_with_its_task(loop, postgres_server):
    async def main():
        conn = await connect(postgres_server)
        watcher = await connect(postgres_server)
        try:
            task = asyncio.ensure_future(conn.execute("SELECT pg_sleep(10)"))
            await asyncio.sleep(0.2)
            active = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
                conn.get_server_pid())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            started = time.monotonic()
            assert await conn.fetchval("SELECT 9") == 9
            assert time.monotonic() - started < 5
            return active
        finally:
            await watcher.close()
            await conn.close()

    assert loop.run_until_complete(main()) == 1


def test_close_and_terminate(loop, postgres_server):
    async def main():
        before = open_fds()
        conns = [await connect(postgres_server) for _ in range(3)]
        assert open_fds() >= before + 3
        await conns[0].close()
        conns[1].terminate()
        await conns[2].close(timeout=5)
        assert all(c.is_closed() for c in conns)
        with pytest.raises(asyncpg.InterfaceError):
            await conns[0].fetchval("SELECT 1")
        await asyncio.sleep(0.01)
        return before, open_fds()

    before, after = loop.run_until_complete(main())
    assert after == before


def test_server_side_termination_and_notices(loop, postgres_server):
    # The server ends a session (pg_terminate_backend): the client sees end of file, fails the
    # query in flight, and tells its termination listener; notices reach the log listener.
    async def main():
        victim = await connect(postgres_server)
        admin = await connect(postgres_server)
        terminated = asyncio.get_running_loop().create_future()
        notices = []
        victim.add_termination_listener(lambda conn: terminated.set_result(conn is victim))
        victim.add_log_listener(lambda conn, msg: notices.append((msg.severity, msg.message)))
        try:
            await victim.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
            query = asyncio.ensure_future(victim.fetchval("SELECT pg_sleep(10)"))
            await asyncio.sleep(0.1)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)",
                                        victim.get_server_pid()) is True
            with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
                await asyncio.wait_for(query, 5)
            assert await asyncio.wait_for(terminated, 5) is True
            assert victim.is_closed()
            return notices
        finally:
            await victim.close()
            await admin.close()

    assert loop.run_until_complete(main()) == [("NOTICE", "hello 42")]


def test_connect_failures(loop, postgres_server):
    async def main():
        from services import free_port

        closed_port = free_port()
        with pytest.raises(OSError):
            await asyncpg.connect(host="127.0.0.1", port=closed_port, user="pyloop")
        # Several hosts: the refused one is skipped, the next one answers.
        conn = await asyncpg.connect(host=["127.0.0.1", "127.0.0.1"],
                                     port=[closed_port, postgres_server.port],
                                     user=postgres_server.user,
                                     database=postgres_server.database)
        try:
            assert await conn.fetchval("SELECT 5") == 5
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidCatalogNameError):
            await asyncpg.connect(host="127.0.0.1", port=postgres_server.port, user="pyloop",
                                  database="no_such_database")
        # asyncpg closed that transport without waiting; let it finish before the loop closes.
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
