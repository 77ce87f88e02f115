"""Launching training: the pipeline step and `savflow launch-train`, which render and run the job that runs `savflow.train`."""
