"""Which subscription a topic came in on: its payload format and the meter serial in its ``+``.

Pure. Filters are the configured ones (``doxa/meters/+/reading``), without any ``$share/…``
prefix: the broker strips that from the topics it delivers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A serial is one topic level of letters, digits and _ . : - (as the inventory import enforces).
SERIAL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Route:
    serial: str | None
    fmt: str | None
    reason: str | None  # set when the message cannot be used (recorded as its rejection)


@dataclass(frozen=True)
class _Filter:
    levels: tuple[str, ...]
    fmt: str
    serial_level: int
    multi: bool  # ends with '#'


class TopicRouter:
    """Maps a delivered topic to (serial, format). Results are cached per topic (one per meter)."""

    def __init__(self, subscriptions: tuple[tuple[str, str], ...], cache_size: int = 200_000):
        self.filters = []
        for topic_filter, fmt in subscriptions:
            levels = tuple(topic_filter.split("/"))
            self.filters.append(_Filter(levels, fmt, levels.index("+"), levels[-1] == "#"))
        self._cache: dict[str, Route] = {}
        self._cache_size = cache_size

    def route(self, topic: str) -> Route:
        found = self._cache.get(topic)
        if found is None:
            found = self._route(topic)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[topic] = found
        return found

    def _route(self, topic: str) -> Route:
        levels = topic.split("/")
        for f in self.filters:
            if _matches(f, levels):
                serial = levels[f.serial_level]
                if not SERIAL.fullmatch(serial):
                    return Route(serial, f.fmt, f"topic level {serial!r} is not a meter serial")
                return Route(serial, f.fmt, None)
        return Route(None, None, f"topic {topic!r} matches no subscription")


def _matches(f: _Filter, levels: list[str]) -> bool:
    pattern = f.levels
    if f.multi:
        if len(levels) < len(pattern) - 1:
            return False
        pattern = pattern[:-1]
        levels = levels[: len(pattern)]
    elif len(levels) != len(pattern):
        return False
    return all(p == "+" or p == level for p, level in zip(pattern, levels, strict=True))
