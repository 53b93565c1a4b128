"""Doxa's composition root: the ``doxa`` command line, the settings, the embedded local services
(PostgreSQL + TimescaleDB, Mosquitto) and the demo.

It wires the components together (``collector``, ``lookup_web``, ``simulators``, ``schema``,
``metering``, ``billing``, ``exports``), which take their settings as arguments and never read
the environment. This file imports nothing, so that any package may import ``doxa.errors`` (the
one error tree) without loading the commands, settings or services.
"""
