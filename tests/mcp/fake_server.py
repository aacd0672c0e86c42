#!/usr/bin/env python3
"""A deliberately misbehaving MCP server (stdio, standard library only), for tests.

FAKE_MODE=hang-init   never answers initialize
FAKE_MODE=normal      answers; tools: ok (answers), wait (never answers), crash (exits),
                      grow (adds a tool "extra" and says so with notifications/tools/list_changed)
"""
import json
import os
import sys

MODE = os.environ.get("FAKE_MODE", "normal")
extra = False


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
        names = [("ok", "answers"), ("wait", "never answers"), ("crash", "exits"), ("grow", "adds a tool")]
        if extra:
            names.append(("extra", "appears later"))
        tools = [{"name": n, "description": d, "inputSchema": {"type": "object"}} for n, d in names]
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": tools}})
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name == "ok":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "fine"}]}})
        elif name == "crash":
            os._exit(3)
        elif name == "grow":
            extra = True
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "grown"}]}})
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        # "wait": no answer, ever
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "unknown method"}})
