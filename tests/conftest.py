import pytest
import torch

# On 2-core machines, two intra-op threads make these small convolutions several times slower
# than one (contention with the process pools and with each other).
torch.set_num_threads(1)


class Interrupted(Exception):
    """Stands for the Ctrl-C or kill that stops a training."""


class EpochWatch:
    """The epochs `mekit.train.loop.fit` trains, counted (`trained`), with its progress saved at
    every epoch's end; `stop_at(n)` makes the n-th epoch from then raise `Interrupted`, once."""

    Interrupted = Interrupted

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from mekit.train import group_state, loop

        monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)
        monkeypatch.setattr(group_state, "SAVE_COST_SHARE", 0)
        self.trained, self._stop = 0, None
        real = loop._train_epoch

        def counted(*args, **kwargs):
            if self._stop == self.trained + 1:
                self._stop = None
                raise Interrupted
            self.trained += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "_train_epoch", counted)

    def stop_at(self, n: int) -> None:
        self.trained, self._stop = 0, n

    def reset(self) -> None:
        self.trained, self._stop = 0, None


@pytest.fixture
def epochs(monkeypatch):
    """An `EpochWatch` on every fit of the test."""
    return EpochWatch(monkeypatch)
