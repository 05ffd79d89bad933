"""Reliability scenarios: kill -9 while shipping or ingesting, a live reader, a full disk.

Each scenario is an async function the tests in ``tests/test_reliability_*.py``
run small, and ``bench/reliability/<name>.py`` runs big (``--full``) with the
figures docs/RELIABILITY.md reports. ``harness`` holds what they share (the
loopback receiver, daemons in subprocesses, seeded backlogs); ``_daemon.py``
and ``_reader.py`` are the subprocess entry points.
"""
