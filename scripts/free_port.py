"""Print a free loopback TCP port, remembered in a file: the same one as last time while it is free.

    python scripts/free_port.py STATE_FILE

A rerun of a job whose cache keys name its endpoint (``data_gen`` hashes the URL, port included) must find the
server on the same port to reuse what it paid for; the port is kept in STATE_FILE and a new one is chosen only
when the remembered one is taken.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def remembered_port(state: Path) -> int:
    """The port in ``state`` if it is free, else a new free one (written to ``state``)."""
    try:
        port = int(state.read_text().strip())
    except (OSError, ValueError):
        port = 0
    if not (0 < port < 65536 and is_free(port)):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(f"{port}\n")
    return port


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/free_port.py STATE_FILE")
    print(remembered_port(Path(sys.argv[1])))
