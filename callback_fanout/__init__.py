"""callback-fanout: durable receiver for Tencent CI / COS job callbacks."""

__version__ = "0.1.0"
