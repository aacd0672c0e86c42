#!/usr/bin/env python3
"""An Avix service in Python with only the standard library.

The daemon starts it with four variables:
  AVIX_SVC_SOCK    the Unix socket to serve tool calls on
  AVIX_ROUTER_SOCK the router's socket (ipc.register, ipc.verify, ...)
  AVIX_SVC_TOKEN   this run's service token (proves who registers)
  AVIX_SVC_NAME    its name

Wire format (docs/ipc.md): one JSON-RPC 2.0 message per frame, a frame being a 4-byte
little-endian length and that many bytes of JSON; one call per connection.
"""

import json
import os
import socket
import socketserver
import struct
import sys

MAX_FRAME = 1024 * 1024


def read_frame(sock):
    header = recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack("<I", header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is over {MAX_FRAME}")
    body = recv_exact(sock, length)
    if body is None:
        raise ValueError("connection closed inside a frame")
    return json.loads(body)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None if not buf else buf
        buf += chunk
    return buf


def write_frame(sock, msg):
    body = json.dumps(msg).encode()
    sock.sendall(struct.pack("<I", len(body)) + body)


def call(path, method, params):
    """One JSON-RPC call on a fresh connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        write_frame(s, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        reply = read_frame(s)
    if reply is None:
        raise RuntimeError(f"{method}: no reply")
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']['message']}")
    return reply["result"]


TOOLS = [
    {
        "name": "echo/say",
        "description": "Echo the text back, with who asked.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
]


def handle(method, params):
    if method == "echo/say":
        text = params.get("text")
        if not isinstance(text, str):
            raise LookupError(-32602, "argument text (a string) is required")
        caller = params.get("_caller", {})
        # Never trust identity fields without checking: ask the kernel about the token.
        verified = call(os.environ["AVIX_ROUTER_SOCK"], "ipc.verify", {"token": caller.get("token", "")})
        return {
            "text": os.environ.get("ECHO_PREFIX", "") + text,
            "caller": {k: v for k, v in caller.items() if k != "token"},
            "verified": {"pid": verified["pid"], "user": verified["user"]},
        }
    raise LookupError(-32601, f"unknown method {method}")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            req = read_frame(self.request)
        except (ValueError, json.JSONDecodeError) as e:
            write_frame(self.request, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": str(e)}})
            return
        if req is None or "id" not in req:
            return
        try:
            result = handle(req.get("method"), req.get("params") or {})
            write_frame(self.request, {"jsonrpc": "2.0", "id": req["id"], "result": result})
        except LookupError as e:
            code, message = e.args
            write_frame(self.request, {"jsonrpc": "2.0", "id": req["id"], "error": {"code": code, "message": message}})
        except Exception as e:  # a bug here must not kill the service
            write_frame(self.request, {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32603, "message": repr(e)}})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    path = os.environ["AVIX_SVC_SOCK"]
    if os.path.exists(path):
        os.unlink(path)
    server = Server(path, Handler)
    os.chmod(path, 0o600)
    result = call(
        os.environ["AVIX_ROUTER_SOCK"],
        "ipc.register",
        {"token": os.environ["AVIX_SVC_TOKEN"], "name": os.environ["AVIX_SVC_NAME"], "tools": TOOLS},
    )
    print(f"registered: {result['tools']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
