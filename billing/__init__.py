"""Billing (contract §8): closing indices, the tiered tariff with proration and VAT, the bills.

The arithmetic is pure and kept apart from the database so it can be checked by hand:

- ``rounding``: half-up rounding of exact fractions (every rounding in a bill is half-up);
- ``periods``: a ``YYYY-MM`` period and its boundary dates for a customer's reading day;
- ``closing``: the register at each boundary, interpolated between readings, across register
  resets (a meter replacement recorded in the inventory, or a drop seen in the readings);
- ``tariff``: consumption, dates, tariff tables and VAT rates → parts, tier lines and amounts.

``run`` is the only module here that does I/O: it reads readings, tariffs and VAT rates, and
writes the ``bills`` table.
"""
