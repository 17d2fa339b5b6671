"""Lotus job tracker logs: parsing (logparse.py), Go durations (durations.py), the sealing what-if (whatif.py)."""
