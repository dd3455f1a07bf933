"""What the fake provider servers share: case-insensitive request headers and a request
handler that keeps track of its open connections (so `stop()` can close them)."""

from http.server import BaseHTTPRequestHandler


class Headers(dict):
    """A dict of request headers with case-insensitive ``[]``, ``get`` and ``in``."""

    def _key(self, key):
        if isinstance(key, str):
            lower = key.lower()
            for k in dict.keys(self):
                if k.lower() == lower:
                    return k
        return key

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key):
        return dict.__contains__(self, self._key(key))

    def get(self, key, default=None):
        return dict.get(self, self._key(key), default)


class FakeHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, no Nagle stalls, quiet, and every open connection
    registered in `fake._connections` (guarded by `fake._lock`)."""

    fake = None  # set by the subclass's server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake._connections.discard(self.connection)

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence stderr logging
        pass
