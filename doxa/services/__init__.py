"""Private local services: an embedded TimescaleDB cluster and a Mosquitto broker.

The same code serves ``doxa demo``, the commands that default to the embedded database, and the
test fixtures, so a fresh machine behaves like a developer's.
"""
