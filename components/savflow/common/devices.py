"""The ``--device`` choices of every command that runs the model (train, infer): one list, one meaning."""

from __future__ import annotations

AUTO = "auto"  # cuda when a GPU is visible, else cpu
DEVICES = (AUTO, "cuda", "cpu")


def resolve_device(device: str) -> "torch.device":  # noqa: F821  (torch is imported lazily)
    """``auto`` picks CUDA when present; asking for CUDA on a machine without it is an error, not a fallback
    (a job that asked for GPUs and got none should fail, not train for days on the CPU)."""
    import torch

    if device == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if resolved.type not in ("cuda", "cpu"):
        raise ValueError(f"device {device!r}: expected one of {', '.join(DEVICES)} (or cuda:N)")
    return resolved
