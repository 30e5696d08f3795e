"""callback-fanout: durable receiver for Tencent CI / COS job callbacks."""

from importlib.metadata import version

__version__ = version("callback-fanout")
