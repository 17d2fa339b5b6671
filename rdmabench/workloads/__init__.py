"""What is moved: sector layouts at each stage (sector.py), the C1 output (c1.py), their content (pattern.py),
and the Item every transport takes (item.py). Nothing here knows of a transport."""
