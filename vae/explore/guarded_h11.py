"""The explorer's HTTP protocol: uvicorn's h11 protocol, with a deadline on each request from the
moment it is awaited and a place among the limited open connections (the rules are in
:mod:`vae.explore.connections`). Imported only when the explorer serves."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from vae.explore.connections import BODY, HEADERS, TIMEOUT_ANSWER, Guard

# Seconds a timed-out connection stays open after its 408, reading and dropping what arrives.
LINGER_SECONDS = 2.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits of :mod:`vae.explore.connections`; the ``guard``
    it answers to is set by :func:`vae.explore.connections.guarded_protocol`."""

    guard: Guard
    _phase: str | None = None
    _deadline = 0.0
    _partial = False  # part of a request arrived since the connection began to wait
    _timer: asyncio.TimerHandle | None = None
    _lingering = False  # answered 408 and closing: what still arrives is read and dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        if not self.guard.admit(self):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lingering:
            return  # uvicorn's own state ended when the 408 was decided
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        super().data_received(data)
        self._follow(len(data))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self, received: int = 0) -> None:
        """Set the deadline for what the connection now waits for."""
        if self.transport.is_closing():
            phase = None
        elif self.conn.their_state is h11.IDLE:
            phase = HEADERS
        elif self.conn.their_state is h11.SEND_BODY:
            phase = BODY
        else:
            phase = None
        now = self.loop.time()
        if phase != self._phase:
            if phase is None:
                self.guard.waiting.pop(self, None)
            elif phase == HEADERS:
                self._deadline, self._partial = now + self.guard.limits.header_seconds, False
                self.guard.waiting.pop(self, None)
                self.guard.waiting[self] = None  # waits from now: the newest
            else:  # the headers are complete: the body has its own credit
                self._deadline = now + self.guard.limits.body_idle_seconds
                self.guard.waiting.setdefault(self, None)
            self._phase = phase
        elif phase == HEADERS and received:
            self._partial = True
        elif phase == BODY and received:
            # Each byte buys 1 / min_body_rate seconds, never more than the idle time ahead:
            # a trickle (a byte every few seconds) runs out, a stop runs out sooner.
            self._deadline = min(
                now + self.guard.limits.body_idle_seconds,
                self._deadline + received / self.guard.limits.min_body_rate,
            )
        if phase is not None and self._timer is None:
            self._timer = self.loop.call_later(self._deadline - now, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._phase is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self._phase == BODY and self.flow.read_paused:
            # The server stopped reading (its buffer is full): the wait is not the client's.
            self._deadline = now + self.guard.limits.body_idle_seconds
        if now < self._deadline:
            self._timer = self.loop.call_later(self._deadline - now, self._expire)
            return
        self.guard.forget(self)
        if self._phase == HEADERS and not self._partial:
            self.transport.close()  # opened or kept alive, never used: nothing to say
            return
        self.guard.tally.add(self.guard.timed_out)
        answered = self._phase == BODY and self.cycle is not None and self.cycle.response_started
        if answered:
            self.transport.close()
            return
        self.transport.write(TIMEOUT_ANSWER)
        self._linger()

    def _linger(self) -> None:
        """Close after the 408 has had time to arrive. Closing at once, with the client's bytes
        still unread, makes the kernel answer with a reset, which can destroy the 408 before the
        client reads it: so the write side is shut first and what still arrives is dropped."""
        self._lingering = True
        self._phase = None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
