"""Throttles and budgets: failed logins per address, and the upload space every caller shares."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class LoginThrottle:
    """Failed logins per client address: after `failures` within `window` seconds, the address waits
    `window` seconds before it may try again (answered 429 with Retry-After)."""

    def __init__(self, failures: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.window, self.clock = failures, window, clock
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """Seconds `client` must wait before trying again (0: it may try now)."""
        with self._lock:
            seen = self._seen.get(client)
            if not seen:
                return 0.0
            now = self.clock()
            while seen and now - seen[0] > self.window:
                seen.popleft()
            return self.window - (now - seen[-1]) if len(seen) >= self.failures else 0.0

    def failed(self, client: str) -> None:
        with self._lock:
            self._seen.setdefault(client, deque(maxlen=self.failures)).append(self.clock())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)


class UploadSpace:
    """What uploads may hold on disk while they are kept (the page's files are deleted after `keep` seconds):
    at most `total` bytes from every caller together, `per_client` bytes from one address."""

    def __init__(self, total: int, per_client: int, keep: float, clock: Callable[[], float] = time.monotonic):
        self.total, self.per_client, self.keep, self.clock = total, per_client, keep, clock
        self._entries: deque[tuple[float, str, int]] = deque()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = self.clock()
        while self._entries and now - self._entries[0][0] > self.keep:
            self._entries.popleft()

    def room(self, client: str) -> int:
        """Bytes `client` may still upload now."""
        with self._lock:
            self._expire()
            used = sum(size for _, _, size in self._entries)
            mine = sum(size for _, who, size in self._entries if who == client)
            return max(0, min(self.total - used, self.per_client - mine))

    def add(self, client: str, size: int) -> None:
        with self._lock:
            self._entries.append((self.clock(), client, size))
