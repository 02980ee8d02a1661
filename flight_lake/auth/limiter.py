"""Failed logins counted per client address; past the limit the address is told ``busy``.

A fixed window per address: the first failure opens it, ``limit`` failures inside it lock
the address until the window ends (``retry_after`` says when). A success clears the count.
At most ``max_addresses`` windows are kept (the oldest go first), so a flood of addresses
cannot grow memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from flight_lake.errors import Busy


class LoginLimiter:
    def __init__(self, limit: int, window_seconds: float, *, max_addresses: int = 100_000,
                 ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise ``Busy`` with ``retry_after`` if ``address`` has failed too often."""
        with self._lock:
            window = self._windows.get(address)
            if window is None:
                return
            opened, failures = window
            left = opened + self.window_seconds - time.monotonic()
            if left <= 0:
                del self._windows[address]
                return
        if failures >= self.limit:
            retry_after = max(1, math.ceil(left))
            raise Busy(f"too many failed logins from this address; retry in {retry_after} s",
                       retry_after=retry_after)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            opened, failures = self._windows.get(address, (now, 0))
            if now - opened > self.window_seconds:
                opened, failures = now, 0
            self._windows[address] = (opened, failures + 1)
            self._windows.move_to_end(address)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._windows.pop(address, None)
