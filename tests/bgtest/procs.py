"""Child processes with their output in a log file, and a background loop thread."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from typing import Callable


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15,
                 kill_wait: float = 5) -> int | None:
    """Sends sig to a running process and waits for its exit, KILL after timeout. Returns the exit
    status (None when there is no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_wait)
    return proc.returncode


def without_proxy(env=None) -> dict:
    """The environment (os.environ by default) without any proxy variable."""
    return {k: v for k, v in (os.environ if env is None else env).items()
            if "proxy" not in k.lower()}


class Process:
    """A child process whose output goes to log_path (appended). `on_start(self)` runs after every
    start (e.g. to record the pid for the runner), `on_stop(self)` after every stop."""

    def __init__(self, name: str, argv: list[str], log_path, env: dict | None = None,
                 new_session: bool = False, on_start: Callable | None = None,
                 on_stop: Callable | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = env
        self.new_session = new_session
        self.on_start = on_start
        self.on_stop = on_stop
        self.proc: subprocess.Popen | None = None

    def start(self):
        os.makedirs(os.path.dirname(str(self.log_path)) or ".", exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=self.new_session)
        finally:
            log.close()
        if self.on_start:
            self.on_start(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15, kill_wait: float = 5):
        """Sends sig (TERM) and waits for the exit, KILL after timeout; returns the exit status."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc, sig, timeout, kill_wait)
        if self.on_stop:
            self.on_stop(self)
        return rc

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    def log_records(self) -> list[dict]:
        """The JSON objects of a JSON-lines log (other lines skipped)."""
        out = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def log_problems(self) -> dict[str, int]:
        """Counts of the warn/error messages in a JSON-lines log."""
        out: dict[str, int] = {}
        for entry in self.log_records():
            if entry.get("level") in ("warn", "error"):
                key = f"{entry['level']}: {entry.get('msg', '')}"
                out[key] = out.get(key, 0) + 1
        return out


class Loop:
    """A daemon thread that calls step() every `interval` seconds until stop(); an exception from
    step() is kept in `errors` (as "Type: message") and the loop goes on."""

    interval = 1.0
    join_timeout = 30.0

    def __init__(self):
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def step(self):
        raise NotImplementedError

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(self.error_text(e))
            self.stop_event.wait(self.interval)

    def error_text(self, e: Exception) -> str:
        return f"{type(e).__name__}: {e}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join(self.join_timeout)
