"""Pure recommendation algorithms: no I/O, one small contract (see models.base)."""
