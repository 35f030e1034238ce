#!/usr/bin/env python3
"""faultproxy — an HTTP reverse proxy on 127.0.0.1 that injects faults, for testing stores.

Usage:
  faultproxy.py --upstream http://127.0.0.1:PORT [--port 0] [--pidfile F] [fault flags]

Prints "FAULTPROXY_PORT=<port>" and "FAULTPROXY_PID=<pid>" once listening; stop it with SIGTERM
(or SIGKILL) to that PID. Faults (flags, or later through the control endpoint):

  --fail500 N            answer the next N proxied requests with 500
  --fail500-fraction F   answer a fraction F (0..1) of requests with 500
  --reset N              reset the connection (TCP RST) on the next N requests
  --stall N              on the next N requests hang for --stall-seconds S, then close
  --stall-seconds S      (default 30)
  --truncate N           send only half of the body (full Content-Length) on the next N
  --flip N               flip one byte in the middle of the body on the next N
  --status404 N          answer the next N requests with 404
  --latency-ms MS        delay each request by MS before forwarding and MS before answering
                         (~20 emulates a WAN's one-way delay)

Faults with counts are applied in the order stall, reset, 500, 404, truncate, flip; each one
consumes one count per request it hits. The control endpoint is on the same port:

  GET /__faultproxy/set?fail500=2&reset=1&stall=1&stall_seconds=5&truncate=1&flip=1&status404=1
                       &fail500_fraction=0.1&latency_ms=20     (replaces all settings)
  GET /__faultproxy/stats   -> JSON {"requests": n, "forwarded": n, "injected": {...}}
  GET /__faultproxy/clear   -> counters to zero, faults off

Requests to the control endpoint are not counted. Upstream is contacted with a fresh connection
per request; the Host header is passed through unchanged (so SigV4 signatures stay valid).
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self):
        self.fail500 = 0
        self.fail500_fraction = 0.0
        self.reset = 0
        self.stall = 0
        self.stall_seconds = 30.0
        self.truncate = 0
        self.flip = 0
        self.status404 = 0
        self.latency_ms = 0.0
        self.requests = 0
        self.forwarded = 0
        self.injected = {"500": 0, "reset": 0, "stall": 0, "truncate": 0, "flip": 0, "404": 0}

    def configure(self, d):
        self.fail500 = int(d.get("fail500", 0))
        self.fail500_fraction = float(d.get("fail500_fraction", 0))
        self.reset = int(d.get("reset", 0))
        self.stall = int(d.get("stall", 0))
        self.stall_seconds = float(d.get("stall_seconds", self.stall_seconds))
        self.truncate = int(d.get("truncate", 0))
        self.flip = int(d.get("flip", 0))
        self.status404 = int(d.get("status404", 0))
        self.latency_ms = float(d.get("latency_ms", 0))

    def pick(self):
        """Counts the request and decides its fault (or None)."""
        with self.lock:
            self.requests += 1
            for name in ("stall", "reset", "fail500", "status404", "truncate", "flip"):
                if getattr(self, name) > 0:
                    setattr(self, name, getattr(self, name) - 1)
                    key = {"fail500": "500", "status404": "404"}.get(name, name)
                    self.injected[key] += 1
                    return key
            if self.fail500_fraction > 0 and random.random() < self.fail500_fraction:
                self.injected["500"] += 1
                return "500"
            return None

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "forwarded": self.forwarded, "injected": dict(self.injected)}


STATE = State()
UPSTREAM = None  # (host, port)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _control(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/__faultproxy/set":
            with STATE.lock:
                STATE.configure(q)
            self._reply(200, b"ok\n")
        elif u.path == "/__faultproxy/stats":
            self._reply(200, json.dumps(STATE.stats()).encode(), "application/json")
        elif u.path == "/__faultproxy/clear":
            with STATE.lock:
                STATE.clear()
            self._reply(200, b"ok\n")
        else:
            self._reply(404, b"unknown control path\n")

    def _rst(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _proxy(self):
        if self.path.startswith("/__faultproxy/"):
            return self._control()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        fault = STATE.pick()
        latency = STATE.latency_ms / 1000.0
        if latency:
            time.sleep(latency)
        if fault == "stall":
            time.sleep(STATE.stall_seconds)
            self._rst()
            return
        if fault == "reset":
            self._rst()
            return
        if fault == "500":
            if latency:
                time.sleep(latency)
            return self._reply(500, b"<Error><Code>InternalError</Code><Message>injected by faultproxy</Message></Error>", "application/xml")
        if fault == "404":
            if latency:
                time.sleep(latency)
            return self._reply(404, b"<Error><Code>NoSuchKey</Code><Message>injected by faultproxy</Message></Error>", "application/xml")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            conn = http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if self.command not in ("GET", "HEAD") and "content-length" not in {k.lower() for k in headers}:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            rheaders = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
            status = resp.status
            conn.close()
        except OSError as e:
            return self._reply(502, f"faultproxy: upstream failed: {e}\n".encode())
        with STATE.lock:
            STATE.forwarded += 1
        if latency:
            time.sleep(latency)
        if fault == "flip" and data:
            b = bytearray(data)
            b[len(b) // 2] ^= 0xFF
            data = bytes(b)
        self.send_response_only(status)
        for k, v in rheaders:
            if k.lower() == "content-length" and self.command != "HEAD":
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._rst()
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _proxy


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # resets and stalls end connections abruptly on purpose


def main():
    global UPSTREAM
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--pidfile")
    p.add_argument("--fail500", type=int, default=0)
    p.add_argument("--fail500-fraction", type=float, default=0.0)
    p.add_argument("--reset", type=int, default=0)
    p.add_argument("--stall", type=int, default=0)
    p.add_argument("--stall-seconds", type=float, default=30.0)
    p.add_argument("--truncate", type=int, default=0)
    p.add_argument("--flip", type=int, default=0)
    p.add_argument("--status404", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.upstream)
    UPSTREAM = (u.hostname, u.port or 80)
    STATE.configure({"fail500": a.fail500, "fail500_fraction": a.fail500_fraction, "reset": a.reset,
                     "stall": a.stall, "stall_seconds": a.stall_seconds, "truncate": a.truncate,
                     "flip": a.flip, "status404": a.status404, "latency_ms": a.latency_ms})
    srv = Server(("127.0.0.1", a.port), Handler)
    port = srv.server_address[1]
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"FAULTPROXY_PORT={port}", flush=True)
    print(f"FAULTPROXY_PID={os.getpid()}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
