"""What every role shares, in two rooms.

- ``shared.callbacks``: the model of the vendor's callbacks and its parser. Pure code, no I/O;
  it imports nothing of the project but ``shared.errors``.
- The infrastructure, one concept a module: ``settings`` (the one settings object) and
  ``configfile`` (the TOML file that may carry it), ``errors`` (the one exception tree),
  ``topology`` (every queue and exchange name and its arguments), ``amqp`` (connecting),
  ``failover`` (moving between broker nodes), ``confirms`` (a publisher-confirmed channel),
  ``batchformat`` (group-commit messages), ``logs``, ``metrics`` (the Prometheus registry
  and its cheap instruments), ``health`` (the admin endpoints), ``service`` (start, run,
  stop a role) and ``collector`` (the garbage collector's tuning), ``history`` (the delivery
  history's table) and ``history_process`` (the process a worker starts to write it).
  ``moved`` keeps the 0.1 import paths working for one release.

Import direction: ``ingress`` and ``workers`` import ``shared``; ``shared`` imports neither.
"""

from shared.moved import install as _install_moved_paths

_install_moved_paths()
