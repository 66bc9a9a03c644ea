"""Our one HTTP client, for the servers this lab starts: loopback only, JSON answers.

Everything that talks to a server outside the load driver goes through ``Client``: the
health waits when a server starts, the allocator poller of the recorder, the one read
after each pause, the trim, and the idle traffic during pauses. One keep-alive
connection per client, opened again once if the server closed it. ``http.client`` is
imported on first use: ``record`` without ``--service-url`` never pays for it, and the
served process (which imports ``is_loopback`` for its binds) neither.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
import time
from urllib.parse import urlsplit

#: the endpoints every server the lab serves answers (``service.endpoints``), under a prefix of
#: their own so that they never meet an application's routes: what this client asks for
PREFIX = "/__stair_stepper__"
HEALTH = PREFIX + "/healthz"
MEMORY = PREFIX + "/memory"
TRIM = PREFIX + "/trim"


def outside_loopback(host: str) -> str | None:
    """The first address ``host`` names that is not on this machine's loopback ("" when it
    names none at all); None when every address it names is loopback. The one rule for what
    ``serve`` may bind without ``--public`` and what the load driver may send to."""
    host = host.strip("[]").split("%")[0]
    if host == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return ""
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_loopback:
            return str(address)
    return None if infos else ""


def is_loopback(host: str) -> bool:
    return outside_loopback(host) is None


class Client:
    """JSON requests to one server over one kept-alive connection (not shared by threads)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn = None
        self.sent = 0  # every request this client made, answered or not

    def request(self, method: str, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        """(status, body); OSError (http.client's errors included) when there is no answer."""
        import http.client

        self.sent += 1
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, self.timeout)
            self._conn.timeout = timeout or self.timeout
            try:
                self._conn.request(method, path, body=b"" if method == "POST" else None)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # a kept-alive connection the server closed meanwhile: once more, afresh
                if attempt == 2 or not isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                ):
                    raise OSError(f"{method} {path}: {exc or type(exc).__name__}") from None
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, timeout: float | None = None) -> dict:
        """The JSON answer of a 2xx; OSError for anything else (no answer, another status)."""
        status, body = self.request(method, path, timeout)
        if not 200 <= status < 300:
            raise OSError(f"{method} {path} answered {status}")
        try:
            return json.loads(body)
        except ValueError:
            raise OSError(f"{method} {path} answered something that is not JSON") from None

    def get(self, path: str, timeout: float | None = None) -> dict:
        return self.json("GET", path, timeout)

    def post(self, path: str, timeout: float | None = None) -> dict:
        return self.json("POST", path, timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def answers(host: str, port: int, path: str | None, timeout: float = 2.0) -> dict | None:
    """A server's answer to ``GET path`` if 2xx/3xx ({} when ``path`` is None and a TCP
    connection is accepted): its JSON if it sent JSON, else ``{"status": …}``; None while
    it does not answer so."""
    if path is None:
        try:
            with socket.create_connection((host, port), timeout=1):
                return {}
        except OSError:
            return None
    client = Client(f"http://{host}:{port}", timeout)
    try:
        status, body = client.request("GET", path)
    except OSError:
        return None
    finally:
        client.close()
    if not 200 <= status < 400:
        return None
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    return found if isinstance(found, dict) else {"status": status}


class IdleTraffic(threading.Thread):
    """``GET path`` at ``rps`` requests a second until ``stop()`` (experiment --idle-rps)."""

    def __init__(self, base_url: str, path: str, rps: float) -> None:
        super().__init__(name="idle-traffic", daemon=True)
        self.client, self.path, self.period = Client(base_url, 5.0), path, 1.0 / rps
        self._stop_event = threading.Event()
        self.start()

    @property
    def sent(self) -> int:
        return self.client.sent

    def run(self) -> None:
        tick = time.monotonic()
        try:
            while not self._stop_event.is_set():
                # counted as sent either way; the server's own count says what arrived
                with contextlib.suppress(OSError):
                    self.client.request("GET", self.path)
                tick += self.period
                self._stop_event.wait(max(0.0, tick - time.monotonic()))
        finally:
            self.client.close()

    def stop(self) -> int:
        self._stop_event.set()
        self.join(10)
        return self.sent


class AllocatorPoller(threading.Thread):
    """Keeps the newest answer of ``GET path`` (the allocator's accounting), every
    ``interval`` seconds while active.

    Every poll is a request the service answers, and every request allocates: idle
    traffic that lets an allocator that purges only while it allocates purge. So the
    experiment silences the poller while
    the service should be idle (``quiet()``, which also waits out a poll in flight) and
    reads the accounting once with ``poll_now()`` after the floor is taken. ``sent``
    counts every request this poller made; ``fresh()`` gives the newest reading if it is
    at most ``fresh_s`` old (a busy server answers late: an old reading is not repeated).
    """

    def __init__(
        self, service_url: str, path: str, interval: float, fresh_s: float = 1.0, client=None
    ):
        super().__init__(name="allocator-poller", daemon=True)
        # ``client``: anything with get(path, timeout), sent and close() in the HTTP client's
        # place (``agents.Tree``: every process of a --command server, asked as one)
        self.client, self.path = client or Client(service_url, 5.0), path
        self.interval, self.fresh_s = max(interval, 0.05), fresh_s
        self.latest: tuple[float, dict] | None = None
        self.on_reading = None  # called with each reading, under the poll's lock
        self.stopping = threading.Event()
        self.active = threading.Event()
        self.active.set()
        self._busy = threading.Lock()

    @property
    def sent(self) -> int:
        return self.client.sent

    def _get(self, query: str = "") -> dict | None:
        """One poll (the caller holds ``_busy``)."""
        try:
            data = self.client.get(self.path + (f"?{query}" if query else ""), timeout=30.0)
        except OSError:
            return None
        self.latest = (time.monotonic(), data)
        if self.on_reading is not None:
            self.on_reading(data)
        return data

    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.active.wait(0.2):
                continue
            began = time.monotonic()
            with self._busy:
                if self.active.is_set() and not self.stopping.is_set():
                    self._get()
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        with self._busy:
            self.client.close()

    def quiet(self) -> None:
        """No more polls until ``resume()``; returns once no poll is in flight."""
        self.active.clear()
        with self._busy:
            pass

    def resume(self) -> None:
        self.active.set()

    def poll_now(self, query: str = "") -> dict | None:
        """One reading now (``query``: e.g. "structure=1" for the allocator's structure)."""
        with self._busy:
            return self._get(query)

    def fresh(self) -> dict | None:
        if self.latest and time.monotonic() - self.latest[0] <= self.fresh_s:
            return self.latest[1]
        return None

    def stop(self) -> None:
        self.stopping.set()
