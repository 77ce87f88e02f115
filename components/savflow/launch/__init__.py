"""Launching training: the pipeline's train step and ``savflow launch-train`` render and run the job (or the
local torchrun) that runs :mod:`savflow.train`."""
