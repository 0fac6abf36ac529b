"""The application: `mekit analyze` (spot-then-recognise on anyone's video, with its report)
and `mekit serve` (the web UI and HTTP API over it). Nothing below imports this package."""
