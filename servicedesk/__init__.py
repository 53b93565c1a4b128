"""Planned outages and service requests (contract §13, issue 16): pure rules and their queries.

Pure, no I/O: ``calendar`` (working days and deadlines), ``standards`` (which service standard
applies), ``ontime`` (on time, late, pending), ``outages`` (which customers an outage covers and
which notices are due), ``text`` (free-text checks). Queries: ``outage_store``, ``request_store``.
See README.md.
"""
