"""tests/soak/churn_client.py — connection churn against the soak server, ways a client leaves.

    python tests/soak/churn_client.py --port 8080 --connections 1000

Opens --connections connections one after another, each used one way from the list below in
turn, then closed; prints one JSON line: the connections made and how many of each way. Every
response it reads in full is checked (status 200, the body it expects); anything else is an
error, and the process exits 1.

Ways (each a path through the server's and the loop's error handling):
  request   GET /, the whole response read, then close
  upload    POST /echo with a 32 KiB body, the echo read and compared, then close
  halfclose GET / with Connection: close, then shutdown(SHUT_WR) before the response; read
            to the server's EOF (aiohttp closes at the client's EOF without answering, on
            asyncio's loop as on the others, so no answer is accepted; an answer is checked)
  silent    connect, then close without sending anything
  partial   send half a request line, then close
  reset     send GET /, then close with SO_LINGER 0 (RST) before reading anything
  midbody   GET /stream (16 x 4 KiB chunks), read the first 4 KiB, then RST
"""

import argparse
import json
import socket
import struct
import sys

WAYS = ("request", "upload", "halfclose", "silent", "partial", "reset", "midbody")
UPLOAD = bytes(range(256)) * 128  # 32 KiB
LINGER_RST = struct.pack("ii", 1, 0)


def read_response(sock):
    """(status, headers dict, body) of one HTTP/1.1 response with Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF inside the headers: {data[:200]!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF inside the body")
        body += chunk
    return status, headers, body


def check_hello(status, body):
    if status != 200 or b'"Hello, world!"' not in body:
        raise ValueError(f"unexpected answer {status} {body[:200]!r}")


def one(way, host, port):
    sock = socket.create_connection((host, port), timeout=10)
    try:
        if way == "request":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
            check_hello(*read_response(sock)[::2])
        elif way == "upload":
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Type: "
                         b"application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(UPLOAD)
                         + UPLOAD)
            status, _, body = read_response(sock)
            if status != 200 or body != UPLOAD:
                raise ValueError(f"upload: status {status}, {len(body)} bytes back")
        elif way == "halfclose":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            if data:  # aiohttp closes at the client's EOF, on every loop, before answering
                check_hello(int(data.split(None, 2)[1]), data)
        elif way == "silent":
            pass
        elif way == "partial":
            sock.sendall(b"GET / HT")
        elif way == "reset":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        elif way == "midbody":
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: soak\r\n\r\n")
            got = b""
            while len(got) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("EOF before the first chunk")
                got += chunk
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--ways", default=",".join(WAYS),
                        help=f"comma list of ways to use in turn (default: all, {','.join(WAYS)})")
    args = parser.parse_args()
    ways = [way.strip() for way in args.ways.split(",") if way.strip()]
    if not ways or set(ways) - set(WAYS):
        parser.error(f"--ways: choose among {', '.join(WAYS)}")
    counts = dict.fromkeys(WAYS, 0)
    try:
        for index in range(args.connections):
            way = ways[index % len(ways)]
            one(way, args.host, args.port)
            counts[way] += 1
    except Exception as exc:  # noqa: BLE001  (reported, then exit 1)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "ways": counts}))
        return 1
    print(json.dumps({"connections": sum(counts.values()), "ways": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
