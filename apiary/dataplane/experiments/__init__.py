"""Experiment runs: their records, results computed from stored events, comparisons, and
their HTTP routes (HoneyHive ``/v1/runs``)."""
