"""What travels on the broker, in one room: the formats of its messages and their headers.

``raw`` is the raw body's message (a lone body, or a group-commit batch of several);
``events`` is the event message (JSON, or framed events of one routing key);
``envelope`` reads the request's facts back from a message and makes parked copies.

This package imports nothing itself, so that the ingress can use ``raw`` without loading
the callback model.
"""
