"""The ``--device`` choices of every command that runs the model (train, infer): one list, one meaning."""

DEVICES = ("auto", "cuda", "cpu")  # auto: cuda when a GPU is visible, else cpu
