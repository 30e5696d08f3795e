"""Consumers that ship with callback-fanout, usable by name (``--consumer log``)."""
