"""Output: Arrow schemas, row -> table conversion and the Parquet store (atomic
writes, locks, rerun bookkeeping). The store's public API is the only way other
packages (the longitudinal layer included) read or write results. No torch, no Ray.
"""
