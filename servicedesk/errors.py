"""The one error the service desk raises for bad input; its message is for the user as it is."""

from __future__ import annotations


class ServiceDeskError(ValueError):
    """Unusable input (a bad time, an unknown province, a state change not allowed…)."""
