"""`python -m mekit.synth --regenerate`: recompute the base photos' shipped dlib landmarks.

(The same as `python -m mekit.synth.base_faces --regenerate`, without runpy's warning about a
module imported by its own package.)
"""

from mekit.synth.base_faces import main

main()
