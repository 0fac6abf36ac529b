"""A video's input to the spotters, in the order it flows: frames decoded one at a time
(`video`), the face followed and aligned (`track`), the optical flow between aligned frames k
apart (`flow_stream`), and per-frame motion signals reduced from it (`signals`)."""
