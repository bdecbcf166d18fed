"""Benchmarks: consuldns against dnsmasq and unbound with dnsperf, and in-process profiles.

Never part of the test suite. `python -m benchmarks.compare` runs the side-by-side comparison;
`python -m benchmarks.profile_paths` profiles the hit and miss paths in one process.
"""
