"""The loopback TCP proxy of the fault tests (tests/fixtures/tcpproxy.py), on plain sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.tcpproxy import TCP_IPV4_OVERHEAD, TcpProxy

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A listening socket the test accepts on by hand (no thread)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(5)
    yield srv
    srv.close()


def _pair(proxy: TcpProxy, server: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(client, server side) of one connection through the proxy."""
    client = socket.create_connection((proxy.host, proxy.port), timeout=5)
    side, _ = server.accept()
    side.settimeout(5)
    return client, side


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return out


def _is_reset(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer reset the connection (or closed it) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _new_connection_is_reset(proxy: TcpProxy) -> bool:
    """Connect to the proxy: True when it resets the connection (during the handshake or just after)."""
    try:
        late = socket.create_connection((proxy.host, proxy.port), timeout=5)
    except ConnectionResetError:
        return True
    with late:
        return _is_reset(late)


def _wait(cond, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_forwards_both_ways_and_counts(server: socket.socket):
    with TcpProxy(server.getsockname()[1]) as proxy:
        client, side = _pair(proxy, server)
        with client, side:
            client.sendall(b"x" * 100_000)
            assert _recv_exactly(side, 100_000) == b"x" * 100_000
            side.sendall(b"hello")
            assert _recv_exactly(client, 5) == b"hello"
            _wait(lambda: proxy.stats().bytes_down == 5)
            stats = proxy.stats()
            assert (stats.bytes_up, stats.bytes_down, stats.connections, stats.open_connections) == (100_000, 5, 1, 1)
            client.shutdown(socket.SHUT_WR)
            assert side.recv(1) == b"", "EOF is forwarded"
            side.close()
            assert client.recv(1) == b""
        _wait(lambda: proxy.stats().open_connections == 0)
    assert proxy.stats().resets == 0


def test_cut_resets_open_connections_and_refuses_new_ones_until_restore(server: socket.socket):
    with TcpProxy(server.getsockname()[1]) as proxy:
        client, side = _pair(proxy, server)
        with client, side:
            proxy.cut()
            assert _is_reset(client) and _is_reset(side), "both ends learn of the cut at once"
        assert _new_connection_is_reset(proxy), "a new connection during the cut is reset"
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()  # ... and never reaches the target
        server.settimeout(5)
        proxy.restore()
        client, side = _pair(proxy, server)
        with client, side:
            client.sendall(b"back")
            assert _recv_exactly(side, 4) == b"back"
        assert proxy.stats().resets == 2


def test_blackhole_is_silent_until_restore_resets_what_lived_through_it(server: socket.socket):
    with TcpProxy(server.getsockname()[1]) as proxy:
        client, side = _pair(proxy, server)
        with client, side:
            proxy.cut(mode="blackhole")
            client.sendall(b"lost")
            side.sendall(b"lost too")
            assert not _is_reset(side, 0.5), "nothing arrives, nothing is closed"
            assert not _is_reset(client, 0.1)
            with socket.create_connection((proxy.host, proxy.port), timeout=5) as late:
                late.sendall(b"hello?")
                assert not _is_reset(late, 0.3), "a new connection is accepted and never answered"
                proxy.restore()
                assert _is_reset(late)
            assert _is_reset(client) and _is_reset(side), "the connections that lived through the blackhole are dead"
        client, side = _pair(proxy, server)
        with client, side:
            client.sendall(b"back")
            assert _recv_exactly(side, 4) == b"back"
        _wait(lambda: proxy.stats().bytes_up >= 4)
        assert proxy.stats().bytes_up == 4, "what went into the blackhole was never forwarded"


def test_slow_delays_and_throttles_both_directions(server: socket.socket):
    with TcpProxy(server.getsockname()[1]) as proxy:
        client, side = _pair(proxy, server)
        with client, side:
            proxy.slow(latency_s=0.3)
            t0 = time.monotonic()
            client.sendall(b"ping")
            _recv_exactly(side, 4)
            side.sendall(b"pong")
            _recv_exactly(client, 4)
            assert time.monotonic() - t0 >= 0.6, "one latency each way"
            proxy.slow(bytes_per_s=20_000)
            t0 = time.monotonic()
            client.sendall(b"y" * 10_000)
            _recv_exactly(side, 10_000)
            assert time.monotonic() - t0 >= 0.45, "10 kB at 20 kB/s takes half a second"
            proxy.restore()
            client.sendall(b"z" * 1_000_000)
            assert len(_recv_exactly(side, 1_000_000)) == 1_000_000


def test_target_down_resets_the_client():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with TcpProxy(dead_port) as proxy:
            assert _new_connection_is_reset(proxy)
            _wait(lambda: proxy.stats().resets == 1)


def test_tcp_info_counts_the_clients_segments_and_bytes(server: socket.socket):
    with TcpProxy(server.getsockname()[1], mss=1400) as proxy:
        client, side = _pair(proxy, server)
        with client, side:
            client.sendall(b"a" * 100_000)
            _recv_exactly(side, 100_000)
            side.sendall(b"b" * 3000)
            _recv_exactly(client, 3000)
            _wait(lambda: proxy.tcp_info()[0].bytes_acked == 3000)
            (info,) = proxy.tcp_info()
            assert info.bytes_received == 100_000 and info.bytes_acked == 3000
            assert info.data_segs_in >= 100_000 // 1400, "the client's kernel cut segments at the advertised MSS"
            assert info.segs_in >= info.data_segs_in and info.segs_out >= 3
        # closed connections keep counting
        _wait(lambda: proxy.stats().open_connections == 0)
        client, side = _pair(proxy, server)
        with client, side:
            client.sendall(b"c" * 10)
            _recv_exactly(side, 10)
        _wait(lambda: proxy.stats().open_connections == 0)
        wire = proxy.wire()
    # the kernel counts sequence space: each connection's FIN adds one "byte" each way
    assert wire.connections == 2 and wire.bytes_received == 100_010 + 2 and wire.bytes_acked == 3000 + 2
    assert wire.segs_in >= 72 + 2 * 3, "data segments plus SYN, handshake ACK and FIN of each connection"
    up, down = wire.on_the_wire()
    assert up == wire.bytes_received + wire.segs_in * TCP_IPV4_OVERHEAD
    assert down == wire.bytes_acked + (wire.segs_out + 2) * TCP_IPV4_OVERHEAD


def test_via_rewrites_host_and_port_only():
    with TcpProxy(1883) as proxy:
        assert proxy.via("mqtt://varese-1:s3cr%40t@broker.example.org:1883") == f"mqtt://varese-1:s3cr%40t@127.0.0.1:{proxy.port}"
        assert proxy.via("http://127.0.0.1:8086/x") == f"http://127.0.0.1:{proxy.port}/x"
    proxy.close()  # twice is fine
