#!/usr/bin/env python3
"""A tiny TCP load balancer for the restart test, in the manner of a Service in front of two pods.

  tcp_lb.py --listen 127.0.0.1:PORT --backend 127.0.0.1:A --backend 127.0.0.1:B --ca CA.crt
            --stats FILE [--poll 0.15] [--control FILE]

- Accepts on --listen; for each client connection picks the next backend round-robin among those
  whose last readiness probe answered 200, connects to it and passes bytes through both ways
  (TLS stays end to end: this never looks inside).
- Readiness: every --poll seconds, per backend, `GET /readyz` over HTTPS verified against --ca
  (IP SAN 127.0.0.1), 1 s timeout; anything but 200 marks the backend not ready.
- No retry: when the connection to the chosen backend fails the client connection is closed,
  as a kube-proxy rule pointing at a pod that stopped listening would do. Such failures are counted.
- No backend ready: the client connection is closed at once (counted).
- --control FILE (read every poll): {"drain": ["127.0.0.1:A"]} takes those backends out of the
  rotation for new connections, as an endpoint removal does; established connections stay.
- Writes its counters and every readiness transition as JSON to --stats every 0.25 s and at exit
  (SIGTERM/SIGINT).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import time


class Backend:
    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.addr = addr
        self.ready = False
        self.connections = 0
        self.active = 0
        self.connect_failures = 0
        self.failure_samples: list[dict] = []
        self.transitions: list[dict] = []
        self.probes = 0
        self.probe_failures = 0
        self.last_probe = ""

    def set_ready(self, ready: bool, why: str):
        if ready != self.ready:
            self.transitions.append({"t": time.time(), "ready": ready, "why": why})
        self.ready = ready

    def stats(self) -> dict:
        return {"addr": self.addr, "ready": self.ready, "connections": self.connections,
                "active": self.active, "connect_failures": self.connect_failures,
                "failure_samples": self.failure_samples[:20], "transitions": self.transitions,
                "probes": self.probes, "probe_failures": self.probe_failures,
                "last_probe": self.last_probe}


class Balancer:
    def __init__(self, backends: list[Backend], ca: str, poll: float, stats_path: str,
                 control_path: str | None = None):
        self.backends = backends
        self.control_path = control_path
        self.drained: set[str] = set()
        self.poll = poll
        self.stats_path = stats_path
        self.next = 0
        self.accepted = 0
        self.no_backend = 0
        self.pipe_errors = 0
        self.ctx = ssl.create_default_context(cafile=ca)
        self.started = time.time()

    def pick(self) -> Backend | None:
        n = len(self.backends)
        for i in range(n):
            b = self.backends[(self.next + i) % n]
            if b.ready and b.addr not in self.drained:
                self.next = (self.next + i + 1) % n
                return b
        return None

    async def probe(self, b: Backend):
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(b.host, b.port, ssl=self.ctx, server_hostname=b.host), 1.0)
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {b.host}:{b.port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 1.0)
            parts = line.decode(errors="replace").split()
            code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
            b.last_probe = str(code)
            b.set_ready(code == 200, f"readyz {code}")
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            b.probe_failures += 1
            b.last_probe = type(e).__name__
            b.set_ready(False, f"probe {type(e).__name__}")
        finally:
            b.probes += 1
            if writer is not None:
                writer.transport.abort()

    def read_control(self):
        if not self.control_path:
            return
        try:
            with open(self.control_path) as f:
                drained = set(json.load(f).get("drain", []))
        except (OSError, ValueError):
            drained = set()
        for b in self.backends:
            if (b.addr in drained) != (b.addr in self.drained):
                b.transitions.append({"t": time.time(), "ready": b.ready and b.addr not in drained,
                                      "why": "drained" if b.addr in drained else "undrained"})
        self.drained = drained

    async def prober(self):
        while True:
            self.read_control()
            await asyncio.gather(*(self.probe(b) for b in self.backends))
            await asyncio.sleep(self.poll)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            self.pipe_errors += 1
            writer.transport.abort()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.accepted += 1
        b = self.pick()
        if b is None:
            self.no_backend += 1
            client_w.transport.abort()
            return
        try:
            backend_r, backend_w = await asyncio.wait_for(
                asyncio.open_connection(b.host, b.port), 2.0)
        except Exception as e:  # noqa: BLE001 - counted, the client connection is dropped
            b.connect_failures += 1
            b.failure_samples.append({"t": time.time(), "error": repr(e)})
            client_w.transport.abort()
            return
        b.connections += 1
        b.active += 1
        try:
            await asyncio.gather(self.pipe(client_r, backend_w), self.pipe(backend_r, client_w))
        finally:
            b.active -= 1
            for w in (backend_w, client_w):
                w.transport.close()

    def write_stats(self):
        data = {"pid": os.getpid(), "started": self.started, "now": time.time(),
                "drained": sorted(self.drained),
                "accepted": self.accepted, "no_backend": self.no_backend,
                "pipe_errors": self.pipe_errors,
                "backends": [b.stats() for b in self.backends]}
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.stats_path)

    async def stats_writer(self):
        while True:
            self.write_stats()
            await asyncio.sleep(0.25)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--backend", action="append", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--poll", type=float, default=0.15)
    ap.add_argument("--control")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    lb = Balancer([Backend(a) for a in args.backend], args.ca, args.poll, args.stats, args.control)
    server = await asyncio.start_server(lb.handle, host, int(port), backlog=512,
                                        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(lb.prober()), asyncio.create_task(lb.stats_writer())]
    print(f"tcp_lb listening on {args.listen}", flush=True)
    await stop.wait()
    server.close()
    for t in tasks:
        t.cancel()
    lb.write_stats()


if __name__ == "__main__":
    asyncio.run(main())
