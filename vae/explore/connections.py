"""The explorer's connections under load: how many may be open, how long a request may take to
arrive, and one line per repeated condition instead of one per connection.

uvicorn has none of this: it accepts every connection (until the process runs out of file
descriptors), waits for ever for a request that stops half-way, and its only timer is the
keep-alive one after a response. So the explorer serves HTTP through a subclass of uvicorn's h11
protocol (:func:`guarded_protocol`) that, from the moment a connection is accepted:

- counts it against ``Limits.max_connections``; past the limit, the connection that has waited
  longest for its request (headers or body still arriving, or idle between requests) is closed to
  make room, so that connections held open by one client cannot lock out the others; when every
  open connection has a request in progress, the new one is closed at once;
- closes it when the request's headers are not complete ``header_seconds`` after the connection
  opened (or after the previous answer on a kept-alive connection), with a 408 when part of a
  request arrived and silently when nothing did (a browser opens connections ahead of need);
- closes it when the body stops arriving for ``body_idle_seconds``, or arrives more slowly than
  ``min_body_rate`` bytes per second on average (after ``body_idle_seconds`` of credit).

What happens to many connections is counted by :class:`Tally` and written as one warning line per
condition every ``report_seconds`` at most, with the count.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vae.reporting import Reporter

# What a failed accept() says when the process or the system is out of file descriptors or
# memory for a socket: asyncio then stops accepting for a second and reports it to the loop's
# exception handler, once per attempt (a traceback each, thousands a second).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class Limits:
    """How many connections the explorer keeps open and how long a request may take to
    arrive (see the module's docstring)."""

    max_connections: int = 256
    header_seconds: float = 5.0
    body_idle_seconds: float = 10.0
    min_body_rate: float = 10_000.0  # bytes per second: an 8 MiB upload in 14 minutes
    report_seconds: float = 10.0


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


class Tally:
    """Conditions that repeat under load, counted: the first one starts a period of
    ``seconds``, at whose end each condition seen is written in one warning line with its count
    (``{connections}`` in its message becomes "1 connection", "3,000 connections"; ``{times}``
    "1 time", "40 times")."""

    def __init__(self, reporter: Reporter, seconds: float) -> None:
        self.reporter, self.seconds = reporter, seconds
        self.counts: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0

    def add(self, message: str) -> None:
        """Count one more ``message``; called on the event loop."""
        self.counts[message] = self.counts.get(message, 0) + 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._since = loop.time()
            self._timer = loop.call_later(self.seconds, self.flush)

    def flush(self) -> None:
        """Write what was counted since the last line, one line per condition."""
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        took = round(asyncio.get_running_loop().time() - self._since, 1)
        counts, self.counts = self.counts, {}
        for message, count in counts.items():
            counted = message.format(
                connections=_counted(count, "connection"), times=_counted(count, "time")
            )
            self.reporter.warning(f"explorer: {counted} in {took:g} s")


class Guard:
    """The open connections of one server, and those of them still waiting for their request
    (longest-waiting first), for :func:`guarded_protocol`."""

    def __init__(self, limits: Limits, tally: Tally) -> None:
        self.limits, self.tally = limits, tally
        self.open: dict[Any, None] = {}
        self.waiting: dict[Any, None] = {}  # insertion order: since when each has waited
        self.over_limit = (
            f"closed {{connections}} over the limit of {limits.max_connections:,} open at once "
            f"(those waiting longest for their request first)"
        )
        self.timed_out = (
            f"closed {{connections}} whose request did not arrive in time (headers within "
            f"{limits.header_seconds:g} s, a body at {limits.min_body_rate:,.0f} bytes/s or more, "
            f"never {limits.body_idle_seconds:g} s without a byte)"
        )

    def admit(self, connection: Any) -> bool:
        """Count a new connection in; past the limit, close the one that has waited longest for
        its request, or refuse this one (False) when every open connection is being answered."""
        if len(self.open) >= self.limits.max_connections:
            self.tally.add(self.over_limit)
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                return False
            self.forget(oldest)
            oldest.transport.abort()
        self.open[connection] = None
        return True

    def forget(self, connection: Any) -> None:
        """The connection is closed (or about to be): it no longer counts."""
        self.open.pop(connection, None)
        self.waiting.pop(connection, None)


# What a connection waits for: a request's headers, the rest of its body, or nothing (a request
# is being answered, or the connection is closing).
HEADERS, BODY = "headers", "body"


def _timeout_answer() -> bytes:
    body = json.dumps({"error": "the request did not arrive in time"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


TIMEOUT_ANSWER = _timeout_answer()


def guarded_protocol(guard: Guard) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, with ``guard``'s limit on open connections and deadlines on
    requests (see the module's docstring); pass it as ``uvicorn.Config(http=...)``."""
    from vae.explore.guarded_h11 import GuardedH11Protocol

    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def quiet_out_of_resources(
    tally: Tally, descriptor_limit: Callable[[], int | None]
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that counts accept() failing for want of file
    descriptors (or memory) in ``tally`` instead of writing a traceback for each attempt;
    anything else goes to the loop's default handler as before. ``descriptor_limit``: the
    `ulimit -n` to name in the line."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in OUT_OF_RESOURCES:
            limit = descriptor_limit()
            named = f" (ulimit -n {limit:,})" if limit else ""
            # The connection stays queued: asyncio tries again a second later.
            tally.add(f"out of file descriptors{named}: accepting new connections failed {{times}}")
            return
        loop.default_exception_handler(context)

    return handler
