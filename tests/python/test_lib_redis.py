# tests/python/test_lib_redis.py: redis-py's asyncio client (redis.asyncio) against a real Redis
# server (tests/python/services.py) on asyncio's loop and on PyLoop, with the same assertions:
# strings and expiry, pipelines and MULTI/EXEC with WATCH, pub/sub, BLPOP with a timeout, a
# connection pool under concurrency, a task cancelled in the middle of a command, and close.

import asyncio
import itertools
import os
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import WatchError

_keys = itertools.count()


def key(name):
    """A key no other test (or loop's run of this test) uses."""
    return f"pyloop-test:{os.getpid()}:{next(_keys)}:{name}"


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def client(server, **kwargs):
    return aioredis.Redis.from_url(server.url, **kwargs)


def test_get_set_and_expiry(loop, redis_server):
    async def main():
        r = client(redis_server, decode_responses=True)
        try:
            k, n, gone = key("s"), key("n"), key("gone")
            assert await r.set(k, "héllo") is True
            assert await r.get(k) == "héllo"
            assert await r.get(key("missing")) is None
            assert await r.incrby(n, 5) == 5
            assert await r.incr(n) == 6
            assert await r.expire(k, 100) is True
            assert 90 <= await r.ttl(k) <= 100
            assert await r.set(gone, "x", px=50) is True
            await asyncio.sleep(0.15)
            assert await r.get(gone) is None
            assert await r.mget([k, n, gone]) == ["héllo", "6", None]
            big = "z" * (1 << 20)  # larger than one read: the reply arrives in many chunks
            await r.set(k, big)
            assert await r.get(k) == big
            assert await r.delete(k, n) == 2
        finally:
            await r.aclose()

    loop.run_until_complete(main())


def test_tls_and_unix_socket(loop, redis_server):
    async def main():
        secure = aioredis.Redis(host="127.0.0.1", port=redis_server.tls_port, ssl=True,
                                ssl_ca_certs=redis_server.ca_file, decode_responses=True)
        unix = aioredis.Redis(unix_socket_path=redis_server.unix_path, decode_responses=True)
        k, n = key("k"), key("n")
        try:
            big = "t" * (3 << 20)  # many TLS records
            assert await secure.set(k, big) is True
            assert await unix.get(k) == big
            await unix.set(k, "via unix")
            assert await secure.get(k) == "via unix"
            results = await asyncio.gather(*(secure.incr(n) for _ in range(50)))
            assert sorted(results) == list(range(1, 51))
        finally:
            await secure.aclose()
            await unix.aclose()

    loop.run_until_complete(main())


def test_pipeline_and_multi_exec(loop, redis_server):
    async def main():
        r = client(redis_server, decode_responses=True)
        try:
            counter, items = key("counter"), key("items")
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(counter, 0)
                for i in range(100):
                    pipe.incr(counter)
                    pipe.rpush(items, i)
                replies = await pipe.execute()
            assert replies[0] is True and replies[-2:] == [100, 100]

            async with r.pipeline(transaction=True) as pipe:
                replies = await pipe.incr(counter).lrange(items, 0, 2).execute()
            assert replies == [101, ["0", "1", "2"]]

            # WATCH: a change by another client between WATCH and EXEC aborts the transaction.
            other = client(redis_server, decode_responses=True)
            try:
                async with r.pipeline(transaction=True) as pipe:
                    await pipe.watch(counter)
                    value = int(await pipe.get(counter))
                    await other.set(counter, 0)
                    pipe.multi()
                    pipe.set(counter, value + 1)
                    with pytest.raises(WatchError):
                        await pipe.execute()
            finally:
                await other.aclose()
            assert await r.get(counter) == "0"
        finally:
            await r.aclose()

    loop.run_until_complete(main())


def test_pubsub(loop, redis_server):
    async def main():
        r = client(redis_server, decode_responses=True)
        publisher = client(redis_server, decode_responses=True)
        channel = key("chan")
        try:
            async with r.pubsub() as ps:
                await ps.subscribe(channel)
                await ps.psubscribe(channel[:-4] + "*")
                got = []

                async def listen():
                    async for message in ps.listen():
                        if message["type"] in ("message", "pmessage"):
                            got.append((message["type"], message["data"]))
                            if len(got) == 6:
                                return

                listener = asyncio.ensure_future(listen())
                await asyncio.sleep(0.05)
                for i in range(3):
                    # Each message reaches the channel and the pattern subscription.
                    assert await publisher.publish(channel, f"m{i}") == 2
                await asyncio.wait_for(listener, 5)
                await ps.unsubscribe(channel)
                await ps.punsubscribe()
            assert sorted(got) == sorted(
                [("message", f"m{i}") for i in range(3)] + [("pmessage", f"m{i}") for i in range(3)])
        finally:
            await publisher.aclose()
            await r.aclose()

    loop.run_until_complete(main())


def test_bursts_keep_order(loop, redis_server):
    # Thousands of replies arrive in few reads: a pipelined burst of publications reaches the
    # subscriber in order, and a 10,000-command pipeline answers each command.
    async def main():
        r = client(redis_server, decode_responses=True)
        publisher = client(redis_server, decode_responses=True)
        channel, count = key("burst"), 3000
        try:
            async with r.pubsub(ignore_subscribe_messages=True) as ps:
                await ps.subscribe(channel)
                await ps.get_message(timeout=1)  # the subscription confirmation

                async def publish():
                    async with publisher.pipeline(transaction=False) as pipe:
                        for i in range(count):
                            pipe.publish(channel, str(i))
                        await pipe.execute()

                publishing = asyncio.ensure_future(publish())
                got = []
                while len(got) < count:
                    message = await ps.get_message(timeout=5)
                    if message is None:
                        break
                    got.append(int(message["data"]))
                await publishing
            assert got == list(range(count))
            keys = [key(f"p{i}") for i in range(10000)]
            async with r.pipeline(transaction=False) as pipe:
                for i, k in enumerate(keys):
                    pipe.set(k, str(i) * 10, ex=60)
                assert all(await pipe.execute())
            values = await r.mget(keys)
            assert values == [str(i) * 10 for i in range(10000)]
            await r.delete(*keys)
        finally:
            await publisher.aclose()
            await r.aclose()

    loop.run_until_complete(main())


def test_blpop_times_out_and_wakes(loop, redis_server):
    async def main():
        r = client(redis_server, decode_responses=True)
        pusher = client(redis_server, decode_responses=True)
        queue = key("queue")
        try:
            started = time.monotonic()
            assert await r.blpop([queue], timeout=0.3) is None
            assert time.monotonic() - started >= 0.25

            async def push_later():
                await asyncio.sleep(0.1)
                await pusher.rpush(queue, "job")

            pushing = asyncio.ensure_future(push_later())
            started = time.monotonic()
            assert tuple(await r.blpop([queue], timeout=5)) == (queue, "job")
            assert time.monotonic() - started < 4
            await pushing
        finally:
            await pusher.aclose()
            await r.aclose()

    loop.run_until_complete(main())


def test_pool_under_concurrency(loop, redis_server):
    async def main():
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_server.url, max_connections=8, timeout=10, decode_responses=True)
        r = aioredis.Redis(connection_pool=pool)
        counter, hashed = key("counter"), key("hash")
        try:
            async def work(i):
                await r.incr(counter)
                await r.hset(hashed, str(i), i * i)
                return int(await r.hget(hashed, str(i)))

            results = await asyncio.gather(*(work(i) for i in range(300)))
            assert results == [i * i for i in range(300)]
            assert await r.get(counter) == "300"
            assert await r.hlen(hashed) == 300
            assert 1 <= len(pool._available_connections) + len(pool._in_use_connections) <= 8
        finally:
            await r.aclose()
            await pool.aclose()

    loop.run_until_complete(main())


def test_task_cancelled_mid_command(loop, redis_server):
    async def main():
        r = client(redis_server, decode_responses=True, single_connection_client=True)
        queue, k = key("queue"), key("k")
        try:
            await r.set(k, "before")
            blocked = asyncio.ensure_future(r.blpop([queue], timeout=10))
            await asyncio.sleep(0.1)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            # The half-done reply must not be read as the next command's answer.
            await r.rpush(queue, "late")
            assert await r.get(k) == "before"
            assert await r.lpop(queue) == "late"

            # Cancelled by a timeout in the middle of a large reply.
            await r.set(k, "y" * (8 << 20))
            for _ in range(3):
                try:
                    await asyncio.wait_for(r.get(k), 0.001)
                except asyncio.TimeoutError:
                    pass
            assert len(await r.get(k)) == 8 << 20
        finally:
            await r.aclose()

    loop.run_until_complete(main())


def test_server_closes_the_connection(loop, redis_server):
    # The server drops the client (CLIENT KILL): the next command fails or reconnects, as
    # redis-py's retry policy says, and never reads a stale reply.
    async def main():
        r = client(redis_server, decode_responses=True, single_connection_client=True)
        admin = client(redis_server, decode_responses=True)
        k = key("k")
        try:
            await r.set(k, "v")
            my_id = await r.client_id()
            assert await admin.client_kill_filter(_id=my_id) == 1
            await asyncio.sleep(0.05)
            try:
                value = await r.get(k)
            except redis.exceptions.ConnectionError:
                value = await r.get(k)  # the failed command dropped the connection
            assert value == "v"
            assert await r.client_id() != my_id
        finally:
            await admin.aclose()
            await r.aclose()

    loop.run_until_complete(main())


def test_close_releases_connections(loop, redis_server):
    async def main():
        before = open_fds()
        r = client(redis_server)
        await asyncio.gather(*(r.ping() for _ in range(20)))
        assert open_fds() > before
        await r.aclose()
        await asyncio.sleep(0)
        return before, open_fds()

    before, after = loop.run_until_complete(main())
    assert after == before
