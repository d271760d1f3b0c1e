"""Issue 29: output that goes to a log (a pipe, a file) holds no progress-bar frames: ours (tqdm) draw only on a
terminal, NNCF's rich bars print one line per finished step, even with FORCE_COLOR set (which makes rich
animate into a pipe)."""
import os
import subprocess
import sys

from conftest import REPO


def test_quantize_into_a_pipe_writes_no_carriage_returns(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FORCE_COLOR": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "qmlp_nncf", "quantize", "--model", "qmlp_resmlp_fmnist", "--recipe",
                        "qmlp_w8a8", "--calibration-size", "8", "--limit", "200", "--out", str(tmp_path / "q")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=600)
    log = r.stdout.decode()
    assert r.returncode == 0, log[-2000:]
    assert "\r" not in log and "\x1b[" not in log  # no frames, no cursor moves
    steps = [line for line in log.splitlines() if line.startswith("Statistics collection")]
    assert len(steps) == 1 and "8/8" in steps[0]  # NNCF's bar: its final line, once
    assert '"top1"' in log and "wrote" in log


def test_bar_draws_only_on_a_terminal(tmp_path):
    from qmlp_nncf.progress import bar, on_terminal

    with open(tmp_path / "log", "w") as f:
        assert not on_terminal(f)
        b = bar(range(3), desc="x", file=f)
        assert list(b) == [0, 1, 2] and b.disable
    assert (tmp_path / "log").read_text() == ""
