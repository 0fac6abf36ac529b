"""What several commands print the same way: a run's figures, and progress bars per stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mekit.pipeline import RunOutcome


class StageBars:
    """One tqdm bar per stage of a `progress(stage, fraction)` callback."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None

    def progress(self, stage: str, fraction: float) -> None:
        from tqdm.auto import tqdm

        if self._bar is None or self._bar.desc != stage:
            self.close()
            self._bar = tqdm(total=100, desc=stage, unit="%", leave=False)
        self._bar.n = int(round(100 * fraction))
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_outcome(outcome: RunOutcome, seconds: float) -> None:
    """A run's figures (mean ± std over seeds when several), per class, time and report path."""
    from mekit.train.runs import seed_spread

    m, runs = outcome.metrics, outcome.per_seed
    print(f"\n{outcome.title}: {outcome.n_samples} samples ({len(outcome.skipped)} skipped)")
    if len(runs) > 1:
        print(f"  mean ± std over {len(runs)} seeds:")
        for key, name in (("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR")):
            mean, std = seed_spread([getattr(r, key) for r in runs])
            print(f"  {name:<10}{mean:.3f} ± {std:.3f}")
        print(f"  per class, first seed ({outcome.run_dir / 'seed-*'} has each seed's):")
    else:
        for name, value in (("accuracy", m.accuracy), ("UF1", m.uf1), ("UAR", m.uar)):
            print(f"  {name:<10}{value:.3f}")
    print(f"  {'class':<12}{'F1':>7}{'recall':>8}{'n':>5}")
    for label in m.labels:
        c = m.per_class[label]
        print(f"  {label:<12}{c['f1']:>7.3f}{c['recall']:>8.3f}{int(c['support']):>5}")
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in outcome.timings.items())
    print(f"time: {seconds:.0f} s ({timing})")
    print(f"report: {outcome.run_dir / 'summary.md'} (predictions, metrics, confusion matrix)")
