"""savflow infer step."""
