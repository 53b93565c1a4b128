"""Benchmarks: each module measures a Doxa path beside its raw ceiling in the same run.

Convention: a module ``bench/NAME.py`` exposes ``run(quick: bool = False) -> str`` returning a
Markdown section (figures, the ceiling, the ratio) and prints it when run as
``python -m bench.NAME``. ``python -m bench`` (``make bench``) runs them all and rewrites
``docs/benchmarks.md``.
"""
