"""The site's JSON: never a bare ``NaN`` or ``Infinity`` token (they are not JSON).

Intake refuses non-finite numbers (issue 20, finding 5), but a row written before that, or by
hand, may still hold one; it is sent as ``null`` (no value) and logged, never as invalid JSON."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

log = logging.getLogger(__name__)


def finite_only(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(v) for v in value]
    return value


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with ``allow_nan=False`` and non-finite floats sent as null."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        try:
            return json.dumps(obj, allow_nan=False, **kwargs)
        except ValueError:  # (out-of-range floats only: the rest is handled by default())
            log.warning("a non-finite number in a JSON response was sent as null")
            return json.dumps(finite_only(obj), allow_nan=False, **kwargs)
