"""Defaults of the inference options that ``savflow infer``, the inference code and both pipelines share, each
defined once. Light on purpose: the pipeline modules import it, and they import neither numpy nor torch. (A KFP
component's own signature keeps literals: KFP runs the function's source without its module, so a name there
would not resolve in the pod; tests/unit/test_infer_defaults.py holds them to these.)"""

MODEL_CONFIG = "configs/sam2.1/sam2.1_hiera_b+.yaml"  # sam2's released b+ config, the size the recipe fine-tunes
SCORE_THRESHOLD = 0.0  # vos_inference.py's --score_thresh default: a pixel is the object where its logit is > 0
SHARDS = 4  # inference pods of a pipeline run, one GPU each
