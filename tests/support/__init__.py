"""Test helpers: the broker under test, a cuttable TCP proxy, the whole system in-process."""
