"""Simulated Modbus and MQTT meters with faults on demand and an exact truth, for the tests, the
demo and the docs (see README.md here). Product code never imports this package."""
