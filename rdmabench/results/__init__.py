"""The results model every command reads and writes (model.py), and the context
each result carries (context.py)."""
