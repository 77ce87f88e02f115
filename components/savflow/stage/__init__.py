"""savflow stage step."""
