"""Many server-sent-events clients in one asyncio process, driven over stdin/stdout (tests/bench/test_bench_api.py).

Each client is a raw asyncio protocol (no HTTP library: the client must cost
far less than the server it measures) that sends ``GET PATH HTTP/1.0`` (the
stream is then framed by the connection, not chunked) and records, for every
event it receives, the wall-clock time of the read that completed it and the
``state`` of its data. Comments (pings) are skipped.

Commands, one a line; every answer is one line:

* ``connect N``: open clients until N are connected, each counting once its
  first event (the current view) arrived -> ``ok TOTAL FAILED SECONDS``
* ``wait_after T TIMEOUT``: until every client received an event at or after wall-clock
  time T (or TIMEOUT seconds passed) -> ``ok HOW_MANY_DID``
* ``dump`` -> ``json [[times...], [states...]] per client``
* ``close``: close every connection -> ``ok``

Usage: python sse_clients.py HOST PORT PATH
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time

_STATE = re.compile(rb'"state":\s*"([a-z_]+)"')
_BLANK = re.compile(rb"\r\n\r\n|\n\n|\r\r")
CONCURRENT_CONNECTS = 100


class SseClient(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.buf = b""
        self.headers_done = False
        self.status: bytes = b""
        self.times: list[float] = []
        self.states: list[str] = []
        self.first: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buf += data
        if not self.headers_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = self.buf.split(b"\r\n", 1)[0]
            self.buf = self.buf[end + 4:]
            self.headers_done = True
            if b" 200 " not in self.status + b" " and not self.first.done():
                self.first.set_result(False)
        while True:
            m = _BLANK.search(self.buf)
            if m is None:
                return
            block, self.buf = self.buf[: m.start()], self.buf[m.end():]
            if b"data:" not in block:
                continue  # a ping comment
            s = _STATE.search(block)
            self.times.append(now)
            self.states.append(s.group(1).decode() if s else "?")
            if not self.first.done():
                self.first.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.first.done():
            self.first.set_result(False)


async def main(host: str, port: int, path: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    clients: list[SseClient] = []
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def one(sem: asyncio.Semaphore) -> bool:
        async with sem:
            try:
                _, proto = await loop.create_connection(lambda: SseClient(request), host, port)
                ok = await asyncio.wait_for(proto.first, 120)
            except (OSError, asyncio.TimeoutError):
                return False
            if ok:
                clients.append(proto)
            elif proto.transport is not None:
                proto.transport.close()
            return ok

    while True:
        line = (await reader.readline()).decode().split()
        if not line:
            break
        cmd, args = line[0], line[1:]
        if cmd == "connect":
            target = int(args[0])
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(CONCURRENT_CONNECTS)
            failed = 0
            while len(clients) < target and failed < target:
                results = await asyncio.gather(*(one(sem) for _ in range(target - len(clients))))
                failed += results.count(False)
            answer(f"ok {len(clients)} {failed} {time.perf_counter() - t0:.1f}")
        elif cmd == "wait_after":
            after, deadline = float(args[0]), time.monotonic() + float(args[1])

            def done(c: SseClient) -> bool:
                return bool(c.times) and c.times[-1] >= after

            while time.monotonic() < deadline and not all(done(c) for c in clients):
                await asyncio.sleep(0.05)
            answer(f"ok {sum(done(c) for c in clients)}")
        elif cmd == "dump":
            answer("json " + json.dumps([[c.times, c.states, c.lost] for c in clients]))
        elif cmd == "close":
            for c in clients:
                if c.transport is not None:
                    c.transport.close()
            clients.clear()
            await asyncio.sleep(0.5)
            answer("ok")
        else:
            answer(f"error unknown command {cmd}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
