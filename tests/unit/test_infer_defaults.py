"""The inference defaults that a KFP component has to spell out as literals (KFP runs a component's function
source without its module, so a constant's name would not resolve in the pod) are the ones defined once in
:mod:`savflow.infer.defaults` and :mod:`savflow.common.devices`."""

from __future__ import annotations

import inspect

from savflow.common.devices import AUTO, DEVICES
from savflow.infer.component import infer_shard
from savflow.infer.defaults import SCORE_THRESHOLD


def test_the_infer_components_literal_defaults_are_the_shared_ones() -> None:
    params = inspect.signature(infer_shard.python_func).parameters
    assert params["device"].default == AUTO in DEVICES
    assert params["score_thresh"].default == SCORE_THRESHOLD
