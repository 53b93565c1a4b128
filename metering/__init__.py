"""Metering rules, pure: a meter's register at an instant and its use between two instants.

See ``metering/README.md`` for the map. Nothing here does I/O or reads a clock; the inputs are
fetched by ``schema.register_inputs`` (the one place readings are read for these rules) and the
callers (bills, the closing-index export, the customer pages) pass them in.
"""
