"""Token, cost, retry and failure counters of a run (thread-safe; prices in USD per million tokens)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """USD per 1M input / output tokens (0 = not billed, e.g. a local model or your own server)."""

    input_per_m: float = 0.0
    output_per_m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


class Accounting:
    """Counts calls (a logical request), attempts (HTTP requests), retries, failures by kind and tokens."""

    def __init__(self, prices: Prices | None = None):
        self.prices = prices or Prices()
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.attempts = 0
        self.retries = 0
        self.failed_calls = 0
        self.errors: Counter[str] = Counter()
        self.input_tokens: Counter[str] = Counter()
        self.output_tokens: Counter[str] = Counter()
        self.waited_s = 0.0

    def attempt(self, name: str, usage) -> None:
        """One request sent (``usage``: a ``Usage`` with the tokens it cost)."""
        with self._lock:
            self.attempts += 1
            self.input_tokens[name] += usage.input_tokens
            self.output_tokens[name] += usage.output_tokens

    def call(self, name: str, ok: bool) -> None:
        with self._lock:
            self.calls[name] += 1
            self.failed_calls += 0 if ok else 1

    def error(self, kind: str, retried: bool, waited: float = 0.0) -> None:
        with self._lock:
            self.errors[kind] += 1
            self.retries += int(retried)
            self.waited_s += waited

    def cost(self) -> float:
        with self._lock:
            return self.prices.cost(sum(self.input_tokens.values()), sum(self.output_tokens.values()))

    def summary(self) -> dict:
        """A JSON-ready snapshot."""
        with self._lock:
            tin, tout = sum(self.input_tokens.values()), sum(self.output_tokens.values())
            return {
                "calls": sum(self.calls.values()),
                "calls_by_stage": dict(self.calls),
                "attempts": self.attempts,
                "retries": self.retries,
                "failed_calls": self.failed_calls,
                "errors": dict(self.errors),
                "retry_wait_s": round(self.waited_s, 3),
                "input_tokens": tin,
                "output_tokens": tout,
                "tokens_by_stage": {
                    k: {"input": self.input_tokens[k], "output": self.output_tokens[k]} for k in self.input_tokens
                },
                "prices_usd_per_1m": {"input": self.prices.input_per_m, "output": self.prices.output_per_m},
                "cost_usd": round(self.prices.cost(tin, tout), 6),
            }


def add_summaries(a: dict, b: dict) -> dict:
    """Sum two ``Accounting.summary()`` dicts (sessions of one resumed run)."""
    out = dict(a)
    for key in ("calls", "attempts", "retries", "failed_calls", "input_tokens", "output_tokens"):
        out[key] = a.get(key, 0) + b.get(key, 0)
    out["retry_wait_s"] = round(a.get("retry_wait_s", 0.0) + b.get("retry_wait_s", 0.0), 3)
    out["cost_usd"] = round(a.get("cost_usd", 0.0) + b.get("cost_usd", 0.0), 6)
    for key in ("calls_by_stage", "errors"):
        merged = Counter(a.get(key, {}))
        merged.update(b.get(key, {}))
        out[key] = dict(merged)
    stages = {k: dict(v) for k, v in a.get("tokens_by_stage", {}).items()}
    for k, v in b.get("tokens_by_stage", {}).items():
        row = stages.setdefault(k, {"input": 0, "output": 0})
        row["input"] += v["input"]
        row["output"] += v["output"]
    out["tokens_by_stage"] = stages
    out["prices_usd_per_1m"] = b.get("prices_usd_per_1m", a.get("prices_usd_per_1m"))
    return out
