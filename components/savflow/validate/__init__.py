"""``savflow validate``: is this training data what the chosen training config needs, before a GPU is spent?

sam2's training code meets bad data late and obscurely (a video with fewer annotated frames than the clip length
fails after 100 retries with an ``UnboundLocalError``; ``num_frames=2`` trains nothing and ends in "element 0 of
tensors does not require grad"). :mod:`.needs` reads what the config asks for, :mod:`.scan` gathers each video's
facts through the storage API, :mod:`.checks` (pure) turns facts and needs into findings by video and field, and
:mod:`.run` reports them all in one pass.
"""
