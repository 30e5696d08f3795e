"""What travels on the broker, in one room: the formats of its messages and their headers.

``headers`` names every header the system writes or reads; ``framing`` is the one
length-prefixed framing both formats use for their entries; ``facts`` is the request's facts
(:class:`~shared.wire.facts.RequestFacts`) and their two forms, a lone message's properties
and a batch entry's JSON; ``raw`` is the raw body's message (a lone body, or a group-commit
batch of several); ``events`` is the event message (framed events of one routing key, or one
event's JSON); ``envelope`` builds a body's envelope from its facts and copies messages for
the parking queues.

This package imports nothing itself, and only ``envelope`` and ``events`` load the callback
model, so that the ingress can use ``raw`` and ``facts`` without it.
"""
