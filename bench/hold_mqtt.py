"""A process that holds MQTT connections open for a bench: ``python -m bench.hold_mqtt JOB``.

The connected fleet of a login bench lives in processes of its own, not in the process
that serves the logins or registers devices, so what the bench times is the product, not
its clients' event loop; and one process may hold 20,000 file descriptors here, so a
larger fleet is split over several (``Holders``). JOB is a JSON file: ``endpoints``
(``[[host, port], ...]``, the i-th device goes to ``endpoints[i % n]``) and ``creds``
(``{user: password}``). The process connects every device (a refusal is retried, as a
device does, and counted), prints one JSON line (``connected``, ``refused_then_retried``,
``started``/``done`` as wall-clock times), then answers each ``check`` line on stdin with
``{"still_connected": n}`` and closes everything at ``exit`` or end of input.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sensornet.mqtt_wire import connect_packet

Held = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def hold(endpoints: list[tuple[str, int]], creds: dict[str, str], refused: list[str]) -> Held:
    held: Held = []
    gate = asyncio.Semaphore(100)

    async def one(i: int, user: str) -> None:
        host, port = endpoints[i % len(endpoints)]
        for attempt in range(5):
            async with gate:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(connect_packet(f"held-{user}", user, creds[user], keepalive=0))
                await writer.drain()
                ack = await reader.readexactly(4)
            if ack[3] == 0:
                held.append((reader, writer))
                return
            refused.append(user)  # the broker's request to the endpoint timed out: a deny
            writer.close()
            await asyncio.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"{user} refused 5 times: {ack[3]}")

    await asyncio.gather(*(one(i, u) for i, u in enumerate(sorted(creds))))
    return held


async def still_connected(held: Held) -> int:
    await asyncio.sleep(0.2)  # lets the loop read the EOF of any connection the broker closed
    return sum(1 for reader, _ in held if not reader.at_eof())


async def main(job: dict[str, Any]) -> None:
    endpoints = [(str(h), int(p)) for h, p in job["endpoints"]]
    refused: list[str] = []
    started = time.time()
    held = await hold(endpoints, job["creds"], refused)
    done = time.time()
    say = {"connected": len(held), "refused_then_retried": len(refused)}
    print(json.dumps({**say, "started": started, "done": done}), flush=True)
    loop = asyncio.get_running_loop()
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() not in (
        "",
        "exit",
    ):
        if line.strip() == "check":
            print(json.dumps({"still_connected": await still_connected(held)}), flush=True)
    for _, writer in held:
        writer.close()


class Holders:
    """``creds`` held connected by processes of at most ``per_process`` devices each."""

    def __init__(
        self,
        workdir: Path,
        endpoints: list[tuple[str, int]],
        creds: dict[str, str],
        per_process: int,
    ) -> None:
        users = sorted(creds)
        self.procs: list[subprocess.Popen[str]] = []
        for k in range(0, len(users), per_process):
            job = workdir / f"hold-{k}.json"
            part = {u: creds[u] for u in users[k : k + per_process]}
            shifted = endpoints[k % len(endpoints) :] + endpoints[: k % len(endpoints)]
            job.write_text(json.dumps({"endpoints": shifted, "creds": part}))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.hold_mqtt", str(job)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def _line(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"holder {proc.pid} ended (exit code {proc.wait()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def connected(self) -> dict[str, Any]:
        """Wait until every process holds its devices: how many, refusals, wall time."""
        lines = [self._line(p) for p in self.procs]
        if not lines:
            return {"connected": 0, "refused_then_retried": 0, "elapsed_s": 0.0}
        return {
            "connected": sum(x["connected"] for x in lines),
            "refused_then_retried": sum(x["refused_then_retried"] for x in lines),
            "elapsed_s": max(x["done"] for x in lines) - min(x["started"] for x in lines),
        }

    def _send(self, proc: subprocess.Popen[str], text: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(text + "\n")
        proc.stdin.flush()

    def still_connected(self) -> int:
        for proc in self.procs:
            self._send(proc, "check")
        return sum(int(self._line(p)["still_connected"]) for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self._send(proc, "exit")
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
