"""savflow evaluate step."""
