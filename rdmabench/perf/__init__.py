"""Verbs microbenchmarks: perftest's tests, measured by rdmabench's engines.

tests.py     what each test is (operation, bandwidth or latency, who is active)
options.py   what the user asked for, validated
metrics.py   numbers from an engine's raw record: bandwidth, message rate, latency percentiles
control.py   the versioned TCP control channel between `serve` and `run`
server.py    `rdmabench serve`: takes clients one after another
client.py    `rdmabench run`: drives one server through the plan, writes the result file
table.py     the end-of-run table, in perftest's column order
"""
