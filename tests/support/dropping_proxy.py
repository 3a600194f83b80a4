"""A TCP proxy on loopback that loses the answers to the first requests it carries.

For the first ``drop`` connections it reads one whole HTTP request from the client, sends it
to the upstream server, reads the upstream's whole answer (so the server has done the work
and answered), keeps that answer in :attr:`withheld`, and closes the client's connection
without passing a byte of it on: the client sees the connection drop after its request went
out, the one case where it cannot know whether the request took effect. Every later
connection is forwarded both ways unchanged.
"""

import socket
import threading


def read_http_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 request or response with a ``Content-Length`` (or no body), read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class DroppingProxy:
    def __init__(self, upstream_port: int, drop: int = 1) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.drop = drop
        self.connections = 0
        self.withheld: list[bytes] = []  # the upstream's answers the client never got
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def start(self) -> "DroppingProxy":
        self.accepting.start()
        return self

    def stop(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in its thread (Linux)
        except OSError:
            pass
        self.server.close()
        with self.lock:
            sockets = list(self.sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in [self.accepting, *self.threads]:
            t.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self.lock:
            self.threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, upstream]
                self.connections += 1
                dropping = self.connections <= self.drop
            if dropping:
                self._spawn(self._drop, client, upstream)
            else:
                self._spawn(self._pipe, client, upstream)
                self._spawn(self._pipe, upstream, client)

    def _drop(self, client: socket.socket, upstream: socket.socket) -> None:
        upstream.sendall(read_http_message(client))
        answer = read_http_message(upstream)
        with self.lock:
            self.withheld.append(answer)
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # one side closed: the connection is over
