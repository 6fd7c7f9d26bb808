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
    print(f"{args.loop:15s} size={args.size:6d} rtt/s={n / args.duration:9.0f} "
          f"server_cpu_us/rt={cpu / n * 1e6:7.1f}")


def table(args):
    """Runs every loop at every size, interleaved, --repeats times; prints the medians."""
    import statistics
    loops, sizes = args.loops.split(","), [int(s) for s in args.sizes.split(",")]
    results = {}  # (loop, size) -> [(rtt/s, cpu us)]
    for _ in range(args.repeats):
        for size in sizes:
            for name in loops:
                out = subprocess.run([sys.executable, __file__, "--loop", name, "--size",
                                      str(size), "--duration", str(args.duration)],
                                     capture_output=True, text=True)
                fields = dict(f.split("=") for f in out.stdout.split()[1:] if "=" in f)
                if "rtt/s" not in fields:
                    print(f"{name} {size}: failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                results.setdefault((name, size), []).append(
                    (float(fields["rtt/s"]), float(fields["server_cpu_us/rt"])))
    print(f"{'loop':16s} {'size':>6s} {'rtt/s':>8s} {'cpu us/rt':>10s} {'cpu vs pyloop':>14s}")
    for size in sizes:
        base = results.get(("pyloop", size))
        base_cpu = statistics.median(c for _, c in base) if base else None
        for name in loops:
            runs = results.get((name, size))
            if not runs:
                continue
            rtt = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ratio = f"{cpu / base_cpu:.2f}x" if base_cpu else "-"
            print(f"{name:16s} {size:6d} {rtt:8.0f} {cpu:10.1f} {ratio:>14s}")


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
    a = p.parse_args()
    table(a) if a.loops else server(a)
