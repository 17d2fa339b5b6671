"""Many hosts at once: fan-in to one storage host and the all-pairs matrix, coordinated by MPI (run.py)."""
