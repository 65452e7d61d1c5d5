"""What the HTTP client says when the server is not where it should be, slow, or drops a connection.

Wrong port and wrong path use a real ``lakeops serve`` (or nothing at all). A server that
accepts and never answers, or that closes a kept-alive connection as the next request
arrives, cannot be had from uvicorn on demand; a few lines of socket server play that part
of the network.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lakes import make_settings
from serve_process import ServeProcess, free_port

import lakeops
from lakeops.errors import BackendUnavailableError, NotFoundError, ServerTimeoutError, ServerUnreachableError


class SocketServer:
    """A loopback TCP server; ``handle(conn, index)`` serves each accepted connection in a thread."""

    def __init__(self, handle: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.requests: list[bytes] = []
        self._handle = handle
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def read_request(self, conn: socket.socket) -> bytes:
        """One request's head and body (Content-Length bodies only); b"" if the peer closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head.split(b"\r\n")[0])
        return head

    def close(self) -> None:
        self.sock.close()


OK_BODY = (
    b'{"experiments": [{"experiment_id": "0", "name": "Default", "lifecycle_stage": "active"}], '
    b'"next_page_token": null}'
)
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY)


@pytest.fixture
def sockets() -> Iterator[list[SocketServer]]:
    made: list[SocketServer] = []
    yield made
    for server in made:
        server.close()


@pytest.mark.timeout(120)
def test_connection_refused_fails_at_once_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = lakeops.connect(url, flush_timeout_s=3600)  # a retry loop would outlive the test's timeout
    try:
        with pytest.raises(
            ServerUnreachableError, match=r"cannot connect to lakeops at http://127\.0\.0\.1:\d+: .*refused"
        ):
            client.start_run("nowhere", "r")
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_no_answer_within_the_timeout_says_so_and_how_to_wait_longer(sockets: list[SocketServer]) -> None:
    def never_answer(conn: socket.socket, _index: int) -> None:
        with conn:
            server.read_request(conn)
            conn.recv(1)  # until the client gives up and closes

    server = SocketServer(never_answer)
    sockets.append(server)
    client = lakeops.connect(server.url, timeout_s=0.5, flush_timeout_s=3600)
    try:
        with pytest.raises(ServerTimeoutError, match=r"timed out after 0\.5 s; raise timeout_s") as err:
            client.start_run("slow", "r")
        assert err.value.details["timeout_s"] == 0.5
        assert len(server.requests) == 1  # a timeout is not retried: it would wait as long again
    finally:
        client.close()


def _answer_once_then_drop(server_ref: list[SocketServer]) -> Callable[[socket.socket, int], None]:
    """Answer the first request of a connection, then close it when the next request arrives."""

    def handle(conn: socket.socket, _index: int) -> None:
        with conn:
            if not server_ref[0].read_request(conn):
                return
            conn.sendall(OK)
            server_ref[0].read_request(conn)  # the client reuses the kept-alive connection ...
            conn.shutdown(socket.SHUT_RDWR)  # ... and the server closes it without an answer

    return handle


def test_a_dropped_keep_alive_connection_is_retried_for_reads(sockets: list[SocketServer]) -> None:
    ref: list[SocketServer] = []
    server = SocketServer(_answer_once_then_drop(ref))
    ref.append(server)
    sockets.append(server)
    client = lakeops.connect(server.url)
    try:
        assert client.experiments()["name"].to_list() == ["Default"]
        assert client.experiments()["name"].to_list() == ["Default"]  # dropped, sent again on a new connection
        assert server.connections == 2
        assert server.requests == [b"GET /api/v1/experiments?max_results=1000 HTTP/1.1"] * 3
    finally:
        client.close()


def test_a_dropped_connection_is_not_replayed_for_writes(sockets: list[SocketServer]) -> None:
    ref: list[SocketServer] = []
    server = SocketServer(_answer_once_then_drop(ref))
    ref.append(server)
    sockets.append(server)
    transport = lakeops.connect(server.url).transport
    try:
        transport.experiments()  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailableError, match="dropped the connection before answering POST /experiments"):
            transport.create_experiment("once", tags={})  # type: ignore[attr-defined]
        assert [r.split(b" ")[0] for r in server.requests] == [b"GET", b"POST"]  # sent once only
    finally:
        transport.close()


@pytest.mark.api
def test_a_url_with_a_path_is_a_clear_404(servers: dict[str, ServeProcess]) -> None:
    client = lakeops.connect(f"{servers['file'].url}/api/v1")
    try:
        with pytest.raises(NotFoundError, match=r"the URL should be the server root .* without '/api/v1'"):
            client.start_run("wrong-path", "r")
    finally:
        client.close()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServeProcess]:
    """A server of its own, with great-expectations not imported yet (``--no-preload``)."""
    srv = ServeProcess(make_settings("file", tmp_path / "lake", None), tmp_path / "serve.log")
    yield srv
    srv.stop()


@pytest.mark.api
def test_the_first_suite_attached_waits_for_great_expectations(fresh_server: ServeProcess) -> None:
    # The server imports great-expectations on first use (seconds); the client gives such calls
    # minutes, so a short timeout_s for everyday calls does not make attaching a suite fail.
    client = lakeops.connect(fresh_server.url, timeout_s=1)
    try:
        suite = client.attach_suite(
            "customers", "basic", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]
        )
        assert suite["suite_name"] == "basic"
    finally:
        client.close()
