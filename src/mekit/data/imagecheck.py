"""Whether an image file decodes whole: truncated and corrupt files are problems, not data.

OpenCV's `imread` decodes a JPEG cut to a third of its bytes without an error (it prints a
"Premature end of JPEG file" warning to stderr and fills the rest with grey), so a corpus with
a damaged file would be trained on without a word. Pillow decodes strictly: a truncated or
corrupt file raises, and its decoder warnings are turned into errors here as well.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError


def image_problem(path: Path | str) -> str | None:
    """None when `path` decodes completely, else why not (naming the file)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return f"image {path} is empty (0 bytes)"
    except OSError as e:
        return f"cannot read image {path}: {e.strerror or e}"
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a process-wide switch: make sure it is off
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with Image.open(path) as image:
                image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as e:
        detail = str(e).replace(f"'{path}'", "the file") or type(e).__name__
        if isinstance(e, UnidentifiedImageError):
            return f"image {path} is not an image Pillow can identify (corrupt, or another format)"
        if "truncated" in detail or "premature" in detail.lower():
            return f"image {path} is truncated ({detail}); copy the file again"
        return f"image {path} is corrupt or not an image ({detail}); copy the file again"
    return None
