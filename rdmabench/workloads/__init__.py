"""What is moved: sector layouts at each stage (sector.py), the C1 output (c1.py), their content (pattern.py)."""
