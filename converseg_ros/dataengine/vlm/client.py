"""The validating, retrying VLM client every stage calls.

``VLMClient.ask`` sends a request through a backend under a concurrency limit, parses the reply as JSON,
validates it against the request's JSON Schema and the stage's own check (boxes inside the image, indices
in range), and retries with exponential backoff (jitter, capped) — waiting what the server asked in
``Retry-After`` on 429/503. Every attempt's tokens are counted, failed ones included. A ``Budget`` stops
the run (``BudgetExceeded``, a ``FatalVLMError``: unfinished images stay pending) before a request that
would start beyond ``--max-cost``; a ``Pace`` spaces requests to ``--rpm`` per minute; ``on_attempt`` is
called after every request (progress per VLM call).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import jsonschema

from converseg_ros.dataengine.vlm.accounting import Accounting
from converseg_ros.dataengine.vlm.base import (
    Backend,
    FatalVLMError,
    ReplyError,
    TransientError,
    Usage,
    VLMError,
    VLMRequest,
)

log = logging.getLogger(__name__)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call, per-attempt timeout and backoff (seconds)."""

    attempts: int = 4
    timeout: float = 120.0
    backoff: float = 1.0  # first wait; doubles per retry
    max_backoff: float = 30.0
    max_retry_after: float = 300.0  # never wait longer than this for a Retry-After

    def wait(self, retry: int, error: VLMError, rng: random.Random) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based)."""
        if isinstance(error, TransientError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        base = min(self.backoff * 2 ** (retry - 1), self.max_backoff)
        return base * (0.5 + rng.random() / 2)  # jitter so parallel workers do not retry in lockstep


class BudgetExceeded(FatalVLMError):
    """The run reached ``--max-cost``: it stops here and continues with ``--resume --max-cost <more>``."""


@dataclass
class Budget:
    """Stop before spending more than ``limit_usd`` (``spent_before``: earlier sessions of the run)."""

    limit_usd: float | None = None
    spent_before: float = 0.0

    def check(self, accounting: Accounting) -> None:
        if self.limit_usd is None:
            return
        spent = self.spent_before + accounting.cost()
        if spent >= self.limit_usd:
            raise BudgetExceeded(f"--max-cost reached: ${spent:.4f} spent of ${self.limit_usd:.4f}; finished "
                                 "work is kept, continue with --resume and a higher --max-cost")


class Pace:
    """At most ``per_minute`` requests per minute (evenly spaced); clock and sleep are injectable."""

    def __init__(self, per_minute: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = None
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this request may go; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            start = now if self._next is None else max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)


def parse_json_reply(text: str) -> dict:
    """The reply's JSON object (a markdown fence around it is tolerated); ReplyError otherwise."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text.strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"reply is not JSON ({exc.msg} at char {exc.pos}): {_snippet(text)}", "not_json") from exc
    if not isinstance(value, dict):
        raise ReplyError(f"reply is JSON but not an object: {_snippet(text)}", "wrong_schema")
    return value


def validate_schema(value: dict, schema: dict) -> None:
    """Raise ReplyError naming the first place where ``value`` breaks ``schema``."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ReplyError(f"reply does not match the schema at {where}: {exc.message}", "wrong_schema") from exc


def _snippet(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


class VLMClient:
    """Thread-safe: any number of workers share one client; at most ``concurrency`` calls are in flight."""

    def __init__(
        self,
        backend: Backend,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        accounting: Accounting | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
        budget: Budget | None = None,
        pace: Pace | None = None,
        on_attempt: Callable[[dict], None] | None = None,
    ):
        self.backend = backend
        self.policy = policy or RetryPolicy()
        self.accounting = accounting or Accounting()
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.budget = budget or Budget()
        self.pace = pace or Pace(None)
        self.on_attempt = on_attempt

    @property
    def box_format(self) -> str:
        return self.backend.box_format

    def ask(self, request: VLMRequest, check: Callable[[dict], None] | None = None) -> dict:
        """The validated reply object; raises the last error once every attempt failed."""
        last: VLMError | None = None
        for attempt in range(1, self.policy.attempts + 1):
            try:
                value = self._attempt(request, check)
                self.accounting.call(request.name, ok=True)
                return value
            except FatalVLMError:
                self.accounting.call(request.name, ok=False)
                raise
            except (TransientError, ReplyError) as exc:
                last = exc
                retry = attempt < self.policy.attempts
                wait = self.policy.wait(attempt, exc, self._rng) if retry else 0.0
                self.accounting.error(exc.kind, retried=retry, waited=wait)
                log.info("%s attempt %d/%d failed (%s): %s", request.name, attempt, self.policy.attempts,
                         exc.kind, exc)
                if retry:
                    self._sleep(wait)
        self.accounting.call(request.name, ok=False)
        assert last is not None
        kind = getattr(last, "kind", "error")
        raise type(last)(f"{request.name}: gave up after {self.policy.attempts} attempts; last: {last}", kind)

    def _attempt(self, request: VLMRequest, check: Callable[[dict], None] | None) -> dict:
        """One backend call, counted, then parsed and validated."""
        self.budget.check(self.accounting)
        try:
            with self._slots:
                self.pace.wait()
                completion = self.backend.complete(request, self.policy.timeout)
        except VLMError as exc:
            self._counted(request.name, getattr(exc, "usage", None) or Usage())
            raise
        self._counted(request.name, completion.usage)
        value = parse_json_reply(completion.text)
        validate_schema(value, request.schema)
        if check is not None:
            check(value)
        return value

    def _counted(self, name: str, usage: Usage) -> None:
        self.accounting.attempt(name, usage)
        if self.on_attempt is not None:
            self.on_attempt(self.accounting.summary())
