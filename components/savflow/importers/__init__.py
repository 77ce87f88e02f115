"""``savflow import``: other people's video datasets turned into savflow's raw layouts.

Stage, train, infer and evaluate read only the SA-V layouts; a user's own videos (DAVIS, MOSE, LVOS, YouTube-VOS,
or frames and masks exported by an annotation tool) get there through one converter instead of hand-written
scripts whose mistakes only show as a crash deep inside sam2's training code. One module per source format
(:mod:`.davis`, :mod:`.ytvos`, :mod:`.sav_val`, :mod:`.frames_masks`) reads a video into a
:class:`savflow.importers.source.SourceVideo`; :mod:`.writer` writes it in the output layout
(:mod:`.layout`); :mod:`.run` does a whole dataset. The output is checked by :mod:`savflow.validate`.
"""
