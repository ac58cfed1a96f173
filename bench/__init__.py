"""Benchmarks: each prints a table and writes JSON to bench/results/.

Every figure sits beside a baseline measured in the same run.
"""
