"""Worker processes die with their parent, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state  # a zombie has died; only its reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_fold_workers_die_when_the_parent_is_killed(tmp_path):
    (tmp_path / "slowfold.py").write_text(
        textwrap.dedent(
            f"""
            import os, time
            def slow(X, fold):
                open(os.path.join({str(tmp_path)!r}, f"worker-{{os.getpid()}}"), "w").close()
                time.sleep(120)
            """
        )
    )
    (tmp_path / "parent.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            import numpy as np
            from slowfold import slow
            from mekit.train.executors import ProcessExecutor
            from mekit.train.splits import loso_folds
            folds = loso_folds(["a", "b"])
            if __name__ == "__main__":
                list(ProcessExecutor(2).map(slow, folds, (np.zeros(2),)))
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    try:
        deadline = time.monotonic() + 90
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "workers outlived their parent"
    finally:
        parent.kill()
        for p in tmp_path.glob("worker-*"):
            pid = int(p.name.split("-")[1])
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_exits(tmp_path):
    code = "from mekit.procs import die_with_parent; die_with_parent(1 << 30); print('ran on')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "ran on" not in out.stdout
    code = "from mekit.procs import die_with_parent; print(die_with_parent())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(sys.platform.startswith("linux"))
