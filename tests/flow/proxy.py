"""A TCP forwarder between the client and the Flow whose connections can be cut, to test reconnection."""

from __future__ import annotations

import socket
import threading
import time


class DroppingProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; ``drop(pause_s)`` cuts every open connection and refuses
    new ones for ``pause_s`` seconds (as a restarting gateway or a broken network would)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self.drops = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def drop(self, pause_s: float = 2.0) -> None:
        with self._lock:
            self._refuse_until = time.monotonic() + pause_s
            self.drops += 1
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def close(self) -> None:
        self.drop(0)
        _close(self._server)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                _close(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
