#!/usr/bin/env python3
"""A deliberately misbehaving MCP server (stdio, standard library only), for tests.

FAKE_MODE=hang-init   never answers initialize
FAKE_MODE=normal      answers; tools: ok (answers), wait (never answers), crash (exits)
"""
import json
import os
import sys

MODE = os.environ.get("FAKE_MODE", "normal")


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, mid = msg.get("method"), msg.get("id")
    if MODE == "hang-init":
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1.0.0"}}})
    elif method == "tools/list":
        tools = [{"name": n, "description": d, "inputSchema": {"type": "object"}}
                 for n, d in [("ok", "answers"), ("wait", "never answers"), ("crash", "exits")]]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name == "ok":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "fine"}]}})
        elif name == "crash":
            os._exit(3)
        # "wait": no answer, ever
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "unknown method"}})
