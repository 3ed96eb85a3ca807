"""Diagnostics engine: taps, statistics, probe, rules, report and `diagnose`."""
