"""The method, ENTROPY-SELECT (torch only): reference maps (`maps`, Eq. 1-3), frame budgets and the pick
(`allocate`, Eq. 4 and the grid quotas), Algorithm 1 on checked inputs (`pipeline`), the public entry (`select`)."""
