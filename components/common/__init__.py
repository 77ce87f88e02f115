"""savflow common step."""
