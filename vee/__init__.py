"""Validation, estimation and editing of readings (VEE, contract §12).

``vee.rules`` (pure: rule names, thresholds and their defaults), ``vee.validate`` (the rules as
set-based SQL over the fleet: :func:`vee.validate.validate_range`), ``vee.estimate`` (pure:
filling a gap linearly or from the meter's own profile), ``vee.store`` (estimates, edits,
reading versions, exceptions: listing and accepting). See ``vee/README.md``.
"""
