"""The one error the service desk raises for bad input.

Its message is a template with named values (``"no outage %(id)s"``, ``id=7``): ``str(exc)``
is the English sentence the CLI prints; the site translates ``exc.template`` (the templates are
marked for translation in ``lookup_web/service_desk_panel.py``) and fills in ``exc.params``.
"""

from __future__ import annotations


class ServiceDeskError(ValueError):
    """Unusable input (a bad time, an unknown province, a state change not allowed…)."""

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)
