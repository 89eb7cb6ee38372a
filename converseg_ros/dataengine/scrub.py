"""Credentials out of everything stored or printed: error bodies, URLs, reasons, log lines.

``scrub_text`` removes bearer tokens, ``Authorization`` values, key-like query parameters and JSON fields,
user:password in URLs, well-known key shapes (``sk-…``, ``AIza…``) and every secret registered with
``register_secret`` (the API key a backend read from the environment).
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
MASK = "***"
_PATTERNS = [
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer|basic|token)?\s*[^\s\"',;}]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"(?i)([?&](?:key|api[_-]?key|access[_-]?token|token|sig|signature|password|secret)=)[^&\s\"'#]+"),
     r"\1" + MASK),
    (re.compile(r"(?i)([\"']?(?:api[_-]?key|x-goog-api-key|x-api-key|password|secret|access[_-]?token)[\"']?"
                r"\s*[:=]\s*[\"']?)[^\"'\s,;}]+"), r"\1" + MASK),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@"), r"\1" + MASK + "@"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "sk-" + MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), "AIza" + MASK),
]


def register_secret(value: str | None) -> None:
    """Remember a secret (e.g. an API key read from the environment) so it is scrubbed wherever it appears."""
    if value and len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def scrub_text(text: str) -> str:
    """``text`` without credentials."""
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_url(url: str | None) -> str | None:
    """A URL without user:password and without key-like query parameters (None stays None)."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(p for p in parts.query.split("&") if p and not re.match(
        r"(?i)(key|api[_-]?key|access[_-]?token|token|sig|signature|password|secret)=", p))
    return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def has_credentials(url: str | None) -> bool:
    return bool(url) and scrub_url(url) != url
