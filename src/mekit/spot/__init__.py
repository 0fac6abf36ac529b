"""Spotting: find the apex inside a clip and the micro- and macro-expressions in a long video.

`input/` turns a video into what the spotters read (frames, the face track, the flow between
aligned frames k apart, per-frame motion signals); `spotters`, `apex` and `speech` are the
unsupervised spotter; `learned/` is the SOFTNet spotter; `metrics` scores both; `run` is
`mekit spot`.

The package is also callable: `mekit.spot(video, ...)` is `mekit.api.spot(video, ...)`.
"""

import sys

from mekit import ApiPackage

sys.modules[__name__].__class__ = ApiPackage  # mekit.spot(...) runs mekit.api.spot
