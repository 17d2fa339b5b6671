"""Sector-shaped transfers across hosts.

hosts.py    what one host can do for a transfer (generate the workload, start a passive
            end, move items, meter its CPU), locally or through `rdmabench serve` on another
agent.py    the serve side of that: control messages -> a LocalHost
runner.py   the scenario matrix: hand-offs x shapes x transports x repetitions -> result rows; which
            host plays which end comes from the transport's capabilities, never from its name
measure.py  the one clock of a transfer: the wall time of each move, and the throughput over it
"""
