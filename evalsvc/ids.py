"""The widths of the store's id columns: the one source of every id bound (store lookups, HTTP paths).

An id beyond its column cannot exist, and PostgreSQL refuses even to compare with one, so every caller
checks the bound before it reaches SQL. Torch-free and SQL-free: the wire protocol imports it too.
"""

MAX_RUN_ID = 2**31 - 1
"""runs.id is a 32-bit integer."""
MAX_ID = 2**63 - 1
"""The largest id a 64-bit column holds (results, run items)."""
