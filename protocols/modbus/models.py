"""Meter models known to Doxa. (Foundation placeholder: the protocols work replaces this module
with the compiled register maps and derives MODEL_NAMES from them.)"""

MODEL_NAMES: frozenset[str] = frozenset({"sdm120", "sdm630"})
