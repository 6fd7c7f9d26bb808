"""benchmarks/net/tls_probe.py — TLS echo probe for decision 0023: one connection,
request/response, the server on the loop under test, the client a blocking ssl socket in a
child process. Prints round trips per second and the server's CPU microseconds per round trip.

    .venv/bin/python benchmarks/net/tls_probe.py --loop pyloop --size 1024 --duration 3
    .venv/bin/python benchmarks/net/tls_probe.py --loops asyncio,uvloop,pyloop \
        --sizes 1024,65536 --repeats 3     # interleaved runs, medians, ratios to pyloop

Loops: asyncio, uvloop, rloop, pyloop, pyloop-sslproto (this build, native data phase off),
pyloop-base (the build in $PYLOOP_BASELINE, e.g. main before decision 0023).
"""

import argparse
import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import trustme


def make_loop(name):
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "rloop":
        import rloop
        return rloop.new_event_loop()
    if name == "pyloop-base":  # another build (PYLOOP_BASELINE=dir), e.g. main before 0023
        sys.path.insert(0, os.environ["PYLOOP_BASELINE"])
    import data_bridge.pyloop as pyloop
    if name == "pyloop-sslproto":  # this build with the native data phase switched off
        from data_bridge.pyloop import _tls
        _tls.NATIVE_TLS = False
    return pyloop.new_event_loop()


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def client(port, ca, size, duration):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    payload = b"x" * size
    n = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        sock.sendall(payload)
        got = 0
        while got < size:
            chunk = sock.recv(262144)
            if not chunk:
                raise SystemExit("closed")
            got += len(chunk)
        n += 1
    print(n)
    sock.close()


def server(args):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(sctx)
    tmp = tempfile.mkdtemp()
    cafile = os.path.join(tmp, "ca.pem")
    ca.cert_pem.write_to_path(cafile)
    loop = make_loop(args.loop)
    srv = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0, ssl=sctx))
    port = srv.sockets[0].getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--client", str(port), cafile,
                              str(args.size), str(args.duration)], stdout=subprocess.PIPE)

    async def wait_child():
        while child.poll() is None:
            await asyncio.sleep(0.05)

    t0 = os.times()
    loop.run_until_complete(wait_child())
    t1 = os.times()
    n = int(child.stdout.read())
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    srv.close()
    loop.run_until_complete(srv.wait_closed())
    loop.close()
    print(f"{args.loop:15s} size={args.size} rtt/s={n / args.duration:.0f} "
          f"server_cpu_us/rt={cpu / n * 1e6:.1f}")


class PingPong(asyncio.Protocol):
    """Client of the in-loop mode: sends `size` bytes, waits for them back, again."""

    def __init__(self, size, counter):
        self.size, self.counter, self.got = size, counter, 0
        self.payload = b"x" * size

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data):
        self.got += len(data)
        if self.got >= self.size:
            self.got -= self.size
            self.counter[0] += 1
            self.transport.write(self.payload)


def in_loop(args):
    """Both sides on the loop under test, --conns connections: round trips per second of the
    whole process (the loop's CPU is the bottleneck)."""
    ca = trustme.CA()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(sctx)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(cctx)
    loop = make_loop(args.loop)
    counter = [0]

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0, ssl=sctx)
        port = srv.sockets[0].getsockname()[1]
        conns = [await loop.create_connection(lambda: PingPong(args.size, counter), "127.0.0.1",
                                              port, ssl=cctx, server_hostname="localhost")
                 for _ in range(args.conns)]
        await asyncio.sleep(0.3)  # warm up
        start, t0 = counter[0], os.times()
        await asyncio.sleep(args.duration)
        done, t1 = counter[0] - start, os.times()
        for transport, _ in conns:
            transport.abort()
        srv.close()
        await asyncio.sleep(0.1)
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        return done, cpu

    n, cpu = loop.run_until_complete(main())
    loop.close()
    print(f"{args.loop:15s} size={args.size} rtt/s={n / args.duration:.0f} "
          f"server_cpu_us/rt={cpu / n * 1e6:.1f}")


def table(args):
    """Runs every loop at every size, interleaved, --repeats times; prints the medians."""
    import statistics
    loops, sizes = args.loops.split(","), [int(s) for s in args.sizes.split(",")]
    results = {}  # (loop, size) -> [(rtt/s, cpu us)]
    for _ in range(args.repeats):
        for size in sizes:
            for name in loops:
                out = subprocess.run([sys.executable, __file__, "--loop", name, "--size",
                                      str(size), "--duration", str(args.duration)]
                                     + (["--conns", str(args.conns)] if args.conns else []),
                                     capture_output=True, text=True)
                fields = dict(f.split("=") for f in out.stdout.split()[1:] if "=" in f)
                if "rtt/s" not in fields:
                    print(f"{name} {size}: failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                results.setdefault((name, size), []).append(
                    (float(fields["rtt/s"]), float(fields["server_cpu_us/rt"])))
    print(f"{'loop':16s} {'size':>6s} {'rtt/s':>8s} {'cpu us/rt':>10s} {'cpu vs pyloop':>14s}"
          f" {'rtt/s pyloop/x':>15s}")
    for size in sizes:
        base = results.get(("pyloop", size))
        base_cpu = statistics.median(c for _, c in base) if base else None
        base_rtt = statistics.median(r for r, _ in base) if base else None
        for name in loops:
            runs = results.get((name, size))
            if not runs:
                continue
            rtt = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ratio = f"{cpu / base_cpu:.2f}x" if base_cpu else "-"
            speed = f"{base_rtt / rtt:.2f}x" if base_rtt else "-"
            print(f"{name:16s} {size:6d} {rtt:8.0f} {cpu:10.1f} {ratio:>14s} {speed:>15s}")


if __name__ == "__main__":
    if sys.argv[1] == "--client":
        client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        sys.exit(0)
    p = argparse.ArgumentParser()
    p.add_argument("--loop", default="pyloop")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--loops", help="comma-separated: run all, interleaved, print medians")
    p.add_argument("--sizes", default="1024,65536")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--conns", type=int, default=0,
                   help="run client and server on the loop under test, with this many "
                        "connections (default: one connection, client in a child process)")
    a = p.parse_args()
    if a.loops:
        table(a)
    elif a.conns:
        in_loop(a)
    else:
        server(a)
