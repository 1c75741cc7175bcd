"""The clients of the fault tests: one HTTP request each, timed, with what came back, never raising
(a refused or cut connection is an outcome too). Each request carries its own User-Agent, which
the gateway logs with its DownloadEvent, so a test can pair what a client received with what the
portal counted."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Self

# Longest a request may take, answered or refused, while a server is down: past it, a hang.
REQUEST_TIMEOUT_SECONDS = 10


@dataclass
class Outcome:
    what: str  # "download <file>", "api", "page <path>", ...
    user_agent: str
    started: float  # time.monotonic()
    ended: float = 0.0
    status: int | None = None  # None: no answer (connection refused, reset or timed out)
    error: str = ""
    received: int = 0
    complete: bool = False  # a download: the whole file, its sha256 checked
    body: bytes = b""  # the answer's body, unless it is a file

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400 and (self.complete or "download" not in self.what)

    @property
    def failed_cleanly(self) -> bool:
        """Refused in a way a client retries: the service-unavailable status, or no connection."""
        return self.status is None or self.status == 503

    def describe(self) -> str:
        said = self.body[:200].decode(errors="replace").strip() if not self.ok else ""
        return (
            f"{self.what} [{self.user_agent}] -> {self.status} {self.error} {said} in {self.ended - self.started:.2f} s"
        )


def request(port: int, method: str, path: str, *, what: str, user_agent: str, headers: dict | None = None,
            body: bytes | None = None, expect_file: dict | None = None) -> Outcome:  # fmt: skip
    """One request on a new connection. ``expect_file`` ({"size", "sha256"}) reads the answer as
    that file and checks it."""
    outcome = Outcome(what=what, user_agent=user_agent, started=time.monotonic())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    digest = hashlib.sha256()
    try:
        connection.request(method, path, body=body, headers={"User-Agent": user_agent, **(headers or {})})
        response = connection.getresponse()
        outcome.status = response.status
        chunks = []
        while chunk := response.read(1 << 16):
            outcome.received += len(chunk)
            if expect_file is not None:
                digest.update(chunk)
            if expect_file is None or response.status != 200:
                chunks.append(chunk)
        outcome.body = b"".join(chunks)
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
        outcome.error = repr(exc)
    finally:
        connection.close()
        outcome.ended = time.monotonic()
    if expect_file is not None:
        outcome.complete = (
            outcome.status == 200
            and outcome.received == expect_file["size"]
            and digest.hexdigest() == expect_file["sha256"]
        )
    return outcome


def json_body(outcome: Outcome):
    return json.loads(outcome.body)


@dataclass
class ClientLoop:
    """Runs ``step(n)`` (which returns Outcomes) again and again in a thread until stopped."""

    step: object  # (int) -> list[Outcome]
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        def run():
            number = 0
            while not self._stop.is_set():
                number += 1
                self.outcomes.extend(self.step(number))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS * 3)

    def wait_for(self, successes: int, *, after: float, seconds: float) -> None:
        """Until ``successes`` requests started after ``after`` went through (or ``seconds`` pass)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if sum(1 for outcome in list(self.outcomes) if outcome.started >= after and outcome.ok) >= successes:
                return
            time.sleep(0.05)
