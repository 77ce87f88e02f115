"""``argparse`` value types that more than one ``savflow`` command takes, parsed and refused the same way."""

from __future__ import annotations

import argparse


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``--node-selector``, ``--env``): split at the first ``=``; a missing ``=`` or key is a usage
    error naming the text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value
