#!/usr/bin/env bash
# The reference README's manual ATP session, as written: log in with curl, then a real
# WebSocket client (Python's websockets) subscribes, sends the proc spawn command verbatim,
# and gets the reply and the agent's events.
# $PORT is the daemon's ATP port; $AVIX_API_KEY the key init printed for alice.
set -euo pipefail
PY=/usr/bin/python3
$PY -c 'import websockets' 2>/dev/null || PY=python3

# 1. Login
curl -sf -X POST "http://localhost:$PORT/atp/auth/login" \
  -H 'Content-Type: application/json' \
  -d "{\"identity\":\"alice\",\"credential\":\"$AVIX_API_KEY\"}" > login.json
TOKEN=$($PY -c 'import json; print(json.load(open("login.json"))["token"])')
grep -q '"expiresAt"' login.json

# A wrong key is refused with 401 and no token.
code=$(curl -s -o refused.json -w '%{http_code}' -X POST "http://localhost:$PORT/atp/auth/login" \
  -H 'Content-Type: application/json' -d '{"identity":"alice","credential":"sk-avix-wrong"}')
[ "$code" = 401 ] && grep -q EAUTH refused.json && ! grep -q token refused.json

# 2. WS Connect + Interact (the frames are the README's, with the token filled in)
$PY - "$PORT" "$TOKEN" <<'PYEOF'
import asyncio, json, sys
import websockets

port, token = sys.argv[1], sys.argv[2]

async def main():
    async with websockets.connect(f"ws://localhost:{port}/atp",
                                  extra_headers={"Authorization": f"Bearer {token}"}) as ws:
        ready = json.loads(await ws.recv())
        assert ready["event"] == "session.ready", ready
        await ws.send('{"type":"subscribe","events":["*"]}')
        cmd = '{"type":"cmd","id":"req-1","token":"<token>","domain":"proc","op":"spawn","body":{"agent":"researcher","goal":"Hello world"}}'
        await ws.send(cmd.replace("<token>", token))
        reply, pid, seen = None, None, []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if frame["type"] == "reply":
                assert frame["id"] == "req-1" and frame["ok"], frame
                reply, pid = frame, frame["body"]["pid"]
            elif frame.get("pid") == pid or pid is None:
                seen.append(frame["event"])
            if reply and frame.get("event") == "agent.exit" and frame.get("pid") == pid:
                assert frame["body"]["state"] == "completed", frame
                break
        for want in ["agent.spawned", "agent.status", "agent.output.chunk", "agent.tool_call", "agent.tool_result"]:
            assert want in seen, (want, seen)
        # A broken frame gets an error reply and the connection stays.
        await ws.send("not json")
        err = json.loads(await ws.recv())
        while err["type"] != "reply":
            err = json.loads(await ws.recv())
        assert err["ok"] is False and err["error"]["code"] == "EPARSE", err
        await ws.send(json.dumps({"type": "cmd", "id": "req-2", "token": token, "domain": "proc", "op": "list"}))
        while True:
            r = json.loads(await ws.recv())
            if r["type"] == "reply":
                break
        assert r["id"] == "req-2" and any(p["pid"] == pid for p in r["body"]), r
        print(f"pid {pid}: {len(seen)} events, reply {reply['body']}")

asyncio.run(main())
PYEOF
