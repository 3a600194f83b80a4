"""Failure tests: real processes killed with SIGKILL under load, then every accepted event accounted for.

The harness (``cluster``, ``receiver``, ``producer``, ``scenario``) is shared with
``bench/faults.py``, which runs the same scenario at a chosen size and prints the report.
See docs/durability.md for what the suite shows and what it cannot.
"""
