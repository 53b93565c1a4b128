"""Modbus meter register maps, read planning and register codecs (pure, no I/O)."""
