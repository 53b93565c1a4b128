"""Billing (contract §8): billing periods, the tiered tariff with proration and VAT, the bills.

The arithmetic is pure and kept apart from the database so it can be checked by hand:

- ``periods``: a ``YYYY-MM`` period and its boundary days for a customer's reading day;
- ``tariff``: consumption, dates, tariff tables and VAT rates → parts, tier lines and amounts.

The consumption itself (the register at each boundary, resets, the estimated flag) is the
metering rule's (``metering.register``), and every rounding is ``metering.rounding``'s.
``run`` is the only module here that does I/O: it fetches the rule's inputs for batches of meters
(``schema.register_inputs``), reads tariffs and VAT rates, and writes the ``bills`` table.
"""
