"""Lotus job tracker logs (logparse.py), Go durations (durations.py), the sealing what-if (whatif.py), the fetch
lines of Lotus, lotus-worker and Curio logs (fetchlog.py), and which log a file is (readlogs.py)."""
