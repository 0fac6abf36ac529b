"""mekit: facial micro-expression spotting and recognition.

The Python API (`mekit.api`) is loaded on first use, so `import mekit` and the subpackages stay
light: `mekit.analyze(video)`, `mekit.load_corpus(path)`, `mekit.evaluate(model, corpus)`,
`mekit.load_model(path)`; spotting and training are `mekit.api.spot` and `mekit.api.train`
(`mekit.spot` and `mekit.train` are the subpackages). See docs/api.md.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("mekit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Names of mekit.api offered here; `spot` and `train` are not: they would shadow subpackages.
_API = (
    "Analysis",
    "Corpus",
    "Evaluation",
    "Model",
    "Spotting",
    "TrainRun",
    "analyze",
    "evaluate",
    "load_corpus",
    "load_model",
)

__all__ = ["__version__", "api", *_API]


def __getattr__(name: str) -> Any:
    # PEP 562: mekit.api (pandas, and torch once a function runs) loads on first use only.
    if name == "api" or name in _API:
        import importlib

        api = importlib.import_module("mekit.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'mekit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
