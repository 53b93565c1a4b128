"""Operations: the scheduler of periodic jobs (``doxa scheduler``) and its job registry."""
