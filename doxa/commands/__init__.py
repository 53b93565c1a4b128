"""One module per top-level ``doxa`` command; each exposes ``command``."""
