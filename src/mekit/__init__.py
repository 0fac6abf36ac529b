"""mekit: facial micro-expression spotting and recognition.

The Python API (`mekit.api`) is loaded on first use, so `import mekit` and the subpackages stay
light: `mekit.analyze(video)`, `mekit.spot(video)`, `mekit.load_corpus(path)`,
`mekit.train(corpus)`, `mekit.evaluate(model, corpus)`, `mekit.load_model(path)`. See
docs/api.md.
"""

import importlib
import types
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("mekit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Names of mekit.api offered here. `spot` and `train` are the subpackages, which are callable
# (`ApiPackage`), so they stay out of `__all__`: a star import would load torch.
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

_CALLABLE_PACKAGES = ("spot", "train")

__all__ = ["__version__", "api", *_API]


class ApiPackage(types.ModuleType):
    """A subpackage that is also the `mekit.api` function of its name: `mekit.spot(video)` is
    `mekit.api.spot(video)`, while `import mekit.spot.input` works as for any package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Looked up when called: the subpackages sit below mekit.api and may not import it.
        function = getattr(importlib.import_module("mekit.api"), self.__name__.rpartition(".")[2])
        return function(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # PEP 562: mekit.api (pandas, and torch once a function runs) loads on first use only.
    if name == "api" or name in _API:
        api = importlib.import_module("mekit.api")
        return api if name == "api" else getattr(api, name)
    if name in _CALLABLE_PACKAGES:  # `mekit.spot(...)` after a bare `import mekit`
        return importlib.import_module(f"mekit.{name}")
    raise AttributeError(f"module 'mekit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_CALLABLE_PACKAGES})
