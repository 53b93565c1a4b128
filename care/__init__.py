"""Customer care: verified contact details, notices by email and SMS through a durable outbox.

Pure rules (no I/O): ``contacts`` (phone and email normalisation), ``otp`` (one-time codes),
``gsm`` (SMS text within one GSM-7 segment), ``render`` (notice texts in the customer's
language), ``backoff`` (when to try again). The I/O shell: ``verification`` and ``accounts``
(the database side of /account and /staff/reviews), ``outbox`` (queue, claim, mark),
``channels`` (SMTP, the SMS gateway), ``notices`` (what gets queued: bills, usage thresholds,
outages), ``worker`` (``doxa notify run``), ``mailbox`` (the demo's local SMTP sink).
See care/README.md.
"""
