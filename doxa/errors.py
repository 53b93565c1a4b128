"""Doxa's one error tree: every error of ours that a user may see is a :class:`DoxaError`.

A caller catches one base (the CLI catches :class:`DoxaError` and nothing else of ours), a user
reads one page, as with psycopg's ``psycopg.errors``. Each error carries its exit status (contract
§3: 2 bad input, 1 a runtime failure) and a one-line message (:attr:`DoxaError.message`)::

    DoxaError              exit 1  the root
    ├── BadInput           exit 2  the user gave something unusable (also a ValueError)
    │   ├── SettingsError          a DOXA_* setting or the DOXA_CONFIG file  (doxa.settings)
    │   ├── InventoryError         an inventory CSV; .problems names every bad line
    │   │                                                                      (schema.inventory)
    │   ├── UserError              a staff username, role or password          (schema.users)
    │   ├── PeriodError            a billing period that is not YYYY-MM        (billing.periods)
    │   ├── ExportError            an export that cannot be made as asked      (exports)
    │   ├── BillStateError         a bill that cannot be issued, released or corrected as
    │   │                          asked                                       (billing.issue)
    │   └── LifecycleError         a replacement, decommissioning or change of owner that
    │                              cannot be recorded as asked                 (schema.lifecycle)
    ├── Failure            exit 1  something needed at run time is not working (also a
    │   │                          RuntimeError)
    │   ├── ServiceError           the embedded PostgreSQL or Mosquitto        (doxa.services)
    │   ├── MigrationError         the schema cannot be brought up to date     (schema.migrate)
    │   └── BillingDataError       the tariff data in the database is unusable (billing.run)
    └── RuleError          exit 1  a metering or billing rule gives no value for this meter and
        │                          period; listed per meter (bill skips), never a crash (also a
        │                          ValueError)
        ├── NoClosing              no register index at a period boundary      (metering.register)
        └── TariffError            no tariff or VAT rate in force, or a malformed table
                                                                               (billing.tariff)

Each class is defined here and imported by its area under the same name (``from
schema.inventory import InventoryError`` keeps working), so the tree is one page to read.

**Where it lives, and why here.** This module imports nothing, and ``doxa/__init__.py`` imports
nothing either, so any package (``schema/``, ``metering/``, ``billing/``, ``exports/``,
``lookup_web/``, ``collector/``) may import it without loading the composition root's commands,
settings or services (``tests/test_errors.py`` checks that in a fresh interpreter). The one
exception is ``protocols/``, which imports nothing of ours (style.md): its sans-I/O tree
(``protocols.errors.MeterError``: transport, device exception, decode, payload) stays its own.
Those errors never reach a user raw: the collector records them as poll outcomes and rejected
messages, and the configuration ones (``ModelConfigError``, ``BrokerUrlError``) are turned into
:class:`BadInput` where the CLI reads the configuration.
"""

from __future__ import annotations


class DoxaError(Exception):
    """The root: a one-line message for the user and the exit status of the command."""

    exit_code = 1

    @property
    def message(self) -> str:
        """The first line of the message (the class name when there is none)."""
        text = str(self).strip() or type(self).__name__
        return text.splitlines()[0]


class BadInput(DoxaError, ValueError):
    """The user gave something unusable: a bad file, date, option or value. Exit status 2."""

    exit_code = 2


class Failure(DoxaError, RuntimeError):
    """Something needed at run time is not working (database unreachable, port taken…). Exit 1."""


class RuleError(DoxaError, ValueError):
    """A metering or billing rule gives no value here; the message says why (for a skip list)."""


# -- bad input ----------------------------------------------------------------------------------


class SettingsError(BadInput):
    """A setting has a value that cannot be used; the message names the setting."""


class InventoryError(BadInput):
    """An inventory file that cannot be imported; ``problems`` lists each bad line (or the
    first ones), each naming its line and column."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class UserError(BadInput):
    """A staff username, role or password that cannot be used."""


class PeriodError(BadInput):
    """A billing period that is not ``YYYY-MM`` (a month from 1970 to 2200)."""


class ExportError(BadInput):
    """The export cannot be made as asked (dates reversed, bad period…); one line says why."""


class BillStateError(BadInput):
    """A bill cannot be issued, released or corrected as asked (none issued, nothing changed…)."""


class LifecycleError(BadInput):
    """A meter replacement, decommissioning or change of owner cannot be recorded as asked."""


# -- failures -----------------------------------------------------------------------------------


class ServiceError(Failure):
    """An embedded service (PostgreSQL, Mosquitto) cannot be used; the message says what to do."""


class MigrationError(Failure):
    """The schema could not be brought up to date; the message says why and what to do."""


class BillingDataError(Failure):
    """The tariff data in the database cannot be used (a malformed table); nothing was written."""


# -- rule errors --------------------------------------------------------------------------------


class NoClosing(RuleError):
    """The indices cannot be closed for this period; the message says why, for the bill list."""


class TariffError(RuleError):
    """No tariff or VAT rate is in force for a day, or a tariff table is malformed."""
