"""Benchmarks: the parser on one core (``parse_bench``), the ingress against baselines
(``ingress_bench``), with their helpers."""
