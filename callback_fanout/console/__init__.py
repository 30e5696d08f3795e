"""The operator console: `callback-fanout console`, a web page over what the commands do.

Pages (paths are a contract): ``/`` overview, ``/consumers/<name>``, ``/parked``,
``/parked/<queue>``, ``/parked/<queue>/<message id>``, ``/trace?q=<id>``, ``/replay``, and
``/login``. Each reads and acts through the operator tools' own functions
(:mod:`callback_fanout.console.operations`), never a second implementation.
"""
