"""The proxy lab's HTTP client, run inside the lab's network namespace.

Reads one JSON request on stdin (credentials travel there, never in argv) and prints one JSON answer::

    {"port": 8443, "path": "/", "tls": true, "host": "dl.example.test", "ca": "/tmp/root.crt",
     "user": "desterlib", "password": "...", "upgrade": false}
    -> {"status": 200, "headers": {"strict-transport-security": "..."}, "body": "..."}

It connects to 127.0.0.1 and sends the domain as SNI and Host, trusting only ``ca``; ``upgrade`` asks
for a websocket on the path and reads only the status line and headers. A connection error is
``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import sys


def main() -> None:
    req = json.load(sys.stdin)
    host, port = req["host"], int(req["port"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if req.get("tls"):
            # Trust only the lab's CA; SNI and the certificate's name are the domain's, on loopback.
            sock = ssl.create_default_context(cafile=req["ca"]).wrap_socket(sock, server_hostname=host)
    except OSError as exc:
        json.dump({"error": f"{type(exc).__name__}: {exc}"}, sys.stdout)
        return
    conn.sock = sock
    headers = {"Host": host if port in (80, 443) else f"{host}:{port}"}
    if req.get("user") is not None:
        token = base64.b64encode(f"{req['user']}:{req.get('password', '')}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    if req.get("upgrade"):
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    try:
        conn.request(req.get("method", "GET"), req.get("path", "/"), headers=headers)
        resp = conn.getresponse()
        answer = {"status": resp.status, "headers": {k.lower(): v for k, v in resp.getheaders()}}
        if resp.status != 101:
            answer["body"] = resp.read(65536).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
