"""The two kinds of failure the CLI reports (contract §3): bad input (exit 2) and a runtime failure
(exit 1). Each carries a one-line message for the user; no traceback is shown for either."""


class BadInput(ValueError):
    """The user gave something unusable: a bad file, date, option or value. Exit status 2."""


class Failure(RuntimeError):
    """Something needed at run time is not working (database unreachable, port taken…). Exit 1."""
