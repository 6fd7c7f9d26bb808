"""benchmarks/net/servers.py — the Python servers of the networking benchmarks, one per process.

    python benchmarks/net/servers.py --loop uvloop --style protocol --port 8000

Styles (each the plain, idiomatic way to write that server; the same code on every loop):
  sock      echo with loop.sock_accept / sock_recv / sock_sendall on non-blocking sockets
  streams   echo with asyncio.start_server, StreamReader.read, StreamWriter.write + drain
  protocol  echo with an asyncio.Protocol: data_received writes the bytes back
  buffered  echo with an asyncio.BufferedProtocol: the loop receives into the protocol's
            own buffer, buffer_updated writes that memory back
  http      HTTP/1.1 keep-alive server on an asyncio.Protocol with a small hand-written
            request parser and a fixed 13-byte response (for wrk)
  udp       UDP echo with loop.create_datagram_endpoint: a DatagramProtocol whose
            datagram_received sends each datagram back with transport.sendto
  tls       the protocol echo over TLS: create_server(..., ssl=context), the context made
            from --certfile and --keyfile (Python's ssl.SSLContext, as an application makes it)

`--loop pyloop-base` serves on the build in $PYLOOP_BASELINE (what the runners' --baseline
sets). Prints "READY <port>" on stdout once the server accepts connections, then serves until
killed. The harness (run.py) stops it with SIGTERM.

Any error inside the server (an exception in a handler or callback, a method the loop does
not implement) prints its traceback on stderr and ends the process with status 3, so a
broken loop fails the benchmark visibly instead of posting a number: run.py reads the
traceback and reports NotImplementedError as "n/a". A peer resetting the connection is not
an error.
"""

import argparse
import asyncio
import os
import socket
import ssl
import sys
import traceback

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loops  # noqa: E402  (benchmarks/loops.py: how each loop is made)

READ_SIZE = 256 * 1024  # the most any style reads at once (asyncio's transports read 256 KiB)
STYLES = ("sock", "streams", "protocol", "buffered", "http", "udp", "tls")


def fatal(what=None):
    """Print the current exception (or `what`) and end the process at once, status 3."""
    if what is None:
        traceback.print_exc()
    else:
        print(what, file=sys.stderr)
    sys.stderr.flush()
    os._exit(3)


def on_loop_error(loop, context):
    """Exception handler: an error reported by the loop is fatal, with its traceback."""
    exc = context.get("exception")
    message = context.get("message", "")
    if exc is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        fatal(f"loop reported: {message}\n{text}")
    fatal(f"loop reported: {message} {context!r}")


def serve_forever(loop_name, start):
    """Runs `start(loop)` (a coroutine returning the port) on a fresh loop of `loop_name`,
    prints READY <port> for the harness, then serves until killed. Any failure, and any error
    the loop reports, ends the process (fatal)."""
    loop = loops.factory(loop_name)()
    asyncio.set_event_loop(loop)
    loop.set_debug(False)  # PYTHONASYNCIODEBUG must not slow one column down
    loop.set_exception_handler(on_loop_error)
    try:
        port = loop.run_until_complete(start(loop))
    except BaseException:
        fatal()
    print(f"READY {port}", flush=True)
    try:
        loop.run_forever()
    except BaseException:
        fatal()
    fatal("the loop stopped running")


# --- sock_* echo ---------------------------------------------------------------------------

async def sock_echo_client(loop, conn):
    try:
        while True:
            data = await loop.sock_recv(conn, READ_SIZE)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except ConnectionError:
        pass  # the client went away: not a server error
    except BaseException:
        fatal()
    finally:
        conn.close()


async def sock_accept_loop(loop, listener):
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as transports do
            conn.setblocking(False)
            loop.create_task(sock_echo_client(loop, conn))
    except BaseException:
        fatal()


async def start_sock(loop, host, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    listener.setblocking(False)
    loop.create_task(sock_accept_loop(loop, listener))
    await asyncio.sleep(0)  # let the accept loop start (and fail here if it cannot)
    return listener.getsockname()[1]


# --- asyncio streams echo ------------------------------------------------------------------

async def streams_echo_client(reader, writer):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    except BaseException:
        fatal()
    finally:
        writer.close()


async def start_streams(loop, host, port):
    server = await asyncio.start_server(streams_echo_client, host, port, backlog=128)
    return server.sockets[0].getsockname()[1]


# --- Protocol echo -------------------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.transport = None


# --- BufferedProtocol echo -----------------------------------------------------------------

class EchoBufferedProtocol(asyncio.BufferedProtocol):
    transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.view = memoryview(bytearray(READ_SIZE))

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        transport = self.transport
        transport.write(self.view[:nbytes])
        if transport.get_write_buffer_size():
            # Not all sent at once: the transport may still hold a view of this memory
            # (asyncio 3.12+ queues memoryviews without copying), so never overwrite it.
            self.view = memoryview(bytearray(READ_SIZE))

    def connection_lost(self, exc):
        self.transport = None


# --- HTTP/1.1 on a Protocol ----------------------------------------------------------------

BODY = b"Hello, world!"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
LAST_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


def parse_head(head):
    """Parse a request head (request line and headers, CRLF separated, no final blank line).

    Returns (body_length, keep_alive), or None when the request is malformed. HTTP/1.0
    requests are answered and the connection closed (no 1.0 keep-alive).
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    version = parts[2]
    if version == b"HTTP/1.1":
        keep_alive = True
    elif version == b"HTTP/1.0":
        keep_alive = False
    else:
        return None
    body_length = 0
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit():
                return None
            body_length = int(value)
        elif name == b"connection":
            tokens = [token.strip().lower() for token in value.split(b",")]
            if b"close" in tokens:
                keep_alive = False
        elif name == b"transfer-encoding":
            return None  # chunked request bodies are out of scope for this server
    return body_length, keep_alive


class HttpProtocol(asyncio.Protocol):
    """Answers every complete request in the buffer (pipelining included) with RESPONSE."""

    transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        responses = 0
        start = 0
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            parsed = parse_head(bytes(buffer[start:end]))
            if parsed is None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()
                return
            body_length, keep_alive = parsed
            total = end + 4 + body_length
            if len(buffer) < total:
                break  # the body has not all arrived
            responses += 1
            start = total
            if not keep_alive:
                close = True
                break
        if start:
            del buffer[:start]
        if close:
            self.transport.write(RESPONSE * (responses - 1) + LAST_RESPONSE)
            self.transport.close()
            return
        if responses:
            self.transport.write(RESPONSE * responses)
        if len(buffer) > MAX_HEAD:  # a head (or body) too large for this small server
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None


# --- UDP echo ------------------------------------------------------------------------------

class EchoDatagramProtocol(asyncio.DatagramProtocol):
    transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        # A client socket that closed while an echo was on its way (ICMP port unreachable)
        # went away, as a reset TCP peer does: not a server error.
        if not isinstance(exc, ConnectionRefusedError):
            fatal(f"error_received: {exc!r}")


async def start_udp(loop, host, port):
    transport, _ = await loop.create_datagram_endpoint(EchoDatagramProtocol,
                                                       local_addr=(host, port))
    return transport.get_extra_info("sockname")[1]


PROTOCOLS = {"protocol": EchoProtocol, "buffered": EchoBufferedProtocol, "http": HttpProtocol,
             "tls": EchoProtocol}


async def start_protocol(loop, host, port, style, context):
    server = await loop.create_server(PROTOCOLS[style], host, port, backlog=128, ssl=context)
    return server.sockets[0].getsockname()[1]


async def start(loop, style, host, port, context=None):
    if style == "sock":
        return await start_sock(loop, host, port)
    if style == "streams":
        return await start_streams(loop, host, port)
    if style == "udp":
        return await start_udp(loop, host, port)
    return await start_protocol(loop, host, port, style, context)


def server_context(certfile, keyfile):
    """The TLS server context an application makes: Python's defaults, one certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", required=True, choices=loops.KNOWN)
    parser.add_argument("--style", required=True, choices=STYLES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--certfile", help="tls: the server's certificate (PEM)")
    parser.add_argument("--keyfile", help="tls: its private key (PEM)")
    args = parser.parse_args(argv)
    if (args.style == "tls") != bool(args.certfile and args.keyfile):
        parser.error("--certfile and --keyfile go with --style tls, and it needs both")
    context = server_context(args.certfile, args.keyfile) if args.style == "tls" else None

    serve_forever(args.loop, lambda loop: start(loop, args.style, args.host, args.port, context))


if __name__ == "__main__":
    main()
