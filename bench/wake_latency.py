"""Loopback round trip between two processes, after the echoing one has idled for a while.

Why: the query API adds one process hop to every request, and on some machines (nested
virtual machines) waking a process whose CPU went idle costs far more than a busy round
trip. ``sensornet bench query`` sends requests one at a time, so the API has always idled
for a whole InfluxDB query when the next request arrives. This prints, as one JSON line,
the p50 round trip in microseconds after each idle gap, to tell such a machine apart
(docs/benchmarks.md). Loopback only, bounded, stops by itself.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time

GAPS_S = (0.0, 0.0005, 0.002, 0.005)
ROUNDS = 400


def _echo(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(65536):
        conn.sendall(data)
    os._exit(0)


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    if os.fork() == 0:
        _echo(listener)
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    figures = {}
    for gap in GAPS_S:
        samples = []
        for _ in range(ROUNDS):
            until = time.perf_counter() + gap
            while time.perf_counter() < until:  # this side stays busy; the echo side idles
                pass
            t0 = time.perf_counter()
            client.sendall(b"x" * 200)
            client.recv(65536)
            samples.append((time.perf_counter() - t0) * 1e6)
        figures[f"rtt_us_after_{gap * 1000:g}ms_idle"] = round(statistics.median(samples), 1)
    client.close()
    os.wait()
    print(json.dumps({"bench": "wake_latency", **figures}))


if __name__ == "__main__":
    main()
