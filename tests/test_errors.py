"""The one error tree (``doxa.errors``): every error of ours is a DoxaError with an exit status
and a one-line message, importable anywhere without the composition root, and documented whole in
the module's docstring."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from doxa import errors
from doxa.errors import BadInput, DoxaError, Failure, RuleError

TREE = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, DoxaError) and cls.__module__ == errors.__name__
]


def test_the_docstring_documents_every_error_of_the_tree() -> None:
    doc = errors.__doc__ or ""
    assert len(TREE) >= 13
    for cls in TREE:
        assert cls.__name__ in doc, cls


@pytest.mark.parametrize(
    ("where", "name", "exit_code"),
    [
        ("doxa.settings", "SettingsError", 2),
        ("schema.inventory", "InventoryError", 2),
        ("schema.users", "UserError", 2),
        ("billing.periods", "PeriodError", 2),
        ("exports", "ExportError", 2),
        ("doxa.services._proc", "ServiceError", 1),
        ("schema.migrate", "MigrationError", 1),
        ("billing.run", "BillingDataError", 1),
        ("metering.register", "NoClosing", 1),
        ("billing.tariff", "TariffError", 1),
    ],
)
def test_each_area_raises_a_member_of_the_tree(where: str, name: str, exit_code: int) -> None:
    module = __import__(where, fromlist=[name])
    cls = getattr(module, name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, DoxaError) and cls.exit_code == exit_code
    assert issubclass(cls, BadInput if exit_code == 2 else (Failure, RuleError))


def test_message_is_one_line_and_the_old_bases_still_catch() -> None:
    exc = errors.ExportError("the end date is before the start date\nsecond line")
    assert exc.message == "the end date is before the start date"
    assert isinstance(exc, ValueError)  # code that caught ValueError still does
    assert isinstance(errors.MigrationError("x"), RuntimeError)
    assert errors.Failure().message == "Failure"
    problems = errors.InventoryError(["line 2: bad code", "line 3: bad serial"])
    assert problems.message == "line 2: bad code (and 1 more)" and len(problems.problems) == 2


def test_importing_the_tree_loads_nothing_of_the_composition_root() -> None:
    """Any package may import doxa.errors: it brings no command, setting, service or web code,
    and the pure packages built on it (metering, billing's arithmetic) no database driver."""
    code = (
        "import sys, doxa.errors, metering.register, metering.usage, billing.tariff,"
        " billing.periods; print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    doxa_modules = {m for m in loaded if m == "doxa" or m.startswith("doxa.")}
    assert doxa_modules == {"doxa", "doxa.errors"}
    assert not loaded & {"click", "flask", "psycopg", "lookup_web", "schema", "collector"}


def test_the_cli_reports_a_doxa_error_with_its_exit_code(doxa) -> None:
    bad = doxa("bills", "run", "--period", "2025-13")  # PeriodError
    assert (bad.code, bad.err.strip()) == (
        2,
        "doxa: error: period must be YYYY-MM (a month from 1970 to 2200), not '2025-13'",
    )
    missing = doxa("meters", "import", "/nonexistent/inventory.csv")
    assert missing.code == 2 and missing.err.startswith("doxa: error: cannot read")
