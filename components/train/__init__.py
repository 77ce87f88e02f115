"""savflow train step."""
