"""Benchmarks: the system side by side with the alternatives, in one run.

``python -m bench`` (``--quick`` for a smoke run) starts what it needs (emulator, producer,
consumer, baselines, a load generator; PostgreSQL and Redis must be running), runs every scenario
several times and writes JSON, a Markdown report and PNG plots to ``docs/benchmarks/``.
Benchmarks are not tests: nothing here asserts on time.
"""
