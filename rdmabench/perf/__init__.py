"""Verbs microbenchmarks: perftest's tests (rdmabench.engines.tests), measured by rdmabench's engines.

options.py   what the user asked for, validated
metrics.py   numbers from an engine's raw record: bandwidth, message rate, latency percentiles
server.py    the "verbs" service of `rdmabench serve` (rdmabench.serve): one test at a time
client.py    `rdmabench run`: drives the far end through the plan, writes the result file
table.py     the end-of-run table, in perftest's column order
"""
