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


MAX_TOPIC_LENGTH = 256
"""Longest topic routed (characters); a longer one is rejected before it is split or cached
(MQTT allows 65,535 bytes; ``doxa/meters/<64-character serial>/reading`` is 84)."""


def _quote(text: str, limit: int = 80) -> str:
    """``text`` quoted for a reason sentence, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text)} characters)"


class TopicRouter:
    """Maps a delivered topic to (serial, format).

    Routes of usable topics are cached (one per meter), bounded both in entries and in the
    characters of their topics: a stream of unique hostile topics cannot grow it. Rejected routes
    are not cached (they are cheap to compute and would be the attacker's to fill)."""

    def __init__(
        self,
        subscriptions: tuple[tuple[str, str], ...],
        cache_size: int = 200_000,
        cache_chars: int = 16 * 1024 * 1024,
    ):
        self.filters = []
        for topic_filter, fmt in subscriptions:
            levels = tuple(topic_filter.split("/"))
            self.filters.append(_Filter(levels, fmt, levels.index("+"), levels[-1] == "#"))
        self._cache: dict[str, Route] = {}
        self._cache_size = cache_size
        self._cache_chars = cache_chars
        self._chars = 0

    def route(self, topic: str) -> Route:
        found = self._cache.get(topic)
        if found is None:
            if len(topic) > MAX_TOPIC_LENGTH:
                return Route(
                    None,
                    None,
                    f"the topic is {len(topic)} characters long, more than the "
                    f"{MAX_TOPIC_LENGTH} allowed ({_quote(topic, 60)})",
                )
            found = self._route(topic)
            if found.reason is None:
                if len(self._cache) >= self._cache_size or self._chars >= self._cache_chars:
                    self._cache.clear()
                    self._chars = 0
                self._cache[topic] = found
                self._chars += len(topic)
        return found

    @property
    def cached(self) -> tuple[int, int]:
        """(entries, characters of their topics) in the cache."""
        return len(self._cache), self._chars

    def _route(self, topic: str) -> Route:
        levels = topic.split("/")
        for f in self.filters:
            if _matches(f, levels):
                serial = levels[f.serial_level]
                if not SERIAL.fullmatch(serial):
                    return Route(
                        serial[:64], f.fmt, f"topic level {_quote(serial)} is not a meter serial"
                    )
                return Route(serial, f.fmt, None)
        return Route(None, None, f"topic {_quote(topic)} matches no subscription")


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
