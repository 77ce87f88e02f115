"""savflow preflight: is this cluster ready for a run (`savflow doctor`, and the pipelines' first step)."""
