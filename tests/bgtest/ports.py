"""Free loopback ports."""
from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999): a port picked here cannot be taken by an
# outgoing connection between a server's stop and its restart on the same port.
LOW, HIGH = 20000, 32000


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free on 127.0.0.1 now (all held while picking)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(200 * n):
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", random.randint(LOW, HIGH)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < n:
            raise RuntimeError(f"no {n} free ports in {LOW}-{HIGH}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_bindable(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:port now (SO_REUSEADDR, as Go's listeners)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
