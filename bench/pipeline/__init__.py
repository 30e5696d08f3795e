"""The ingress benchmark: our ingress against baselines, under the same load, in one run.

    python bench/ingress_bench.py            # the full run, about 8 minutes
    python bench/ingress_bench.py --quick    # the same sections, shorter, about 2 minutes

It starts everything it needs on 127.0.0.1 (RabbitMQ must be running: ``--amqp-url`` or
``AMQP_URL``), and stops and deletes everything it started and declared, whatever happens:

1. **saturation**: wrk (1 thread, 32 connections, the 2.6 KB OCR XML seed) against the no-op
   aiohttp server, the naive ingress (one publish per request, each awaiting its own
   confirm, on a durable quorum queue), the same minimal handler in front of our group
   commit publisher, the same handler durable on local disk only (one ``fdatasync`` per
   group, no broker: the ceiling of a spool-first design), our ingress's HTTP app with
   publishing disabled (the ceiling of our HTTP code, not durable) and our ingress
   (``callback-fanout ingress``), in interleaved rounds so that the neighbours' noise falls
   on all of them alike (``bench/servers.py``); with the CPU each process (server, broker,
   wrk) spent per request;
2. **fixed rates**: an open-loop generator (``bench/loadgen.py``) offers fractions of the
   no-op server's throughput to each, latency counted from when each request was released;
3. **every acked body is delivered**: every request our ingress answered 2xx is found in
   ``<prefix>.raw`` (bodies unpacked from batches, compared byte for byte);
4. **end to end**: HTTP in -> router -> a no-op consumer, events/s, with one router and one
   worker process, then more processes (``--quick``: one of each only); then one router
   alone on a backlog of raw bodies: events/s, its CPU and the broker's per event;
5. **memory**: the ingress's RSS under sustained saturation; a worker's RSS while a backlog
   of 100,000 events (20,000 with ``--quick``) drains.

It prints a Markdown table and writes it, the raw numbers (JSON) and a plot of latency
against offered rate (PNG) to ``bench/results/``; ``--docs`` also copies the plot to
``docs/bench-latency.png``. Everything is reported as ratios against baselines measured in
the same run: the machine is shared, absolute numbers move.
"""
