"""The main job: `jaxbp train` with no arguments learns XOR after checking its gradients."""

import re
import subprocess
import sys


def test_jaxbp_train_learns_xor():
    out = subprocess.run([sys.executable, "-m", "jaxbp.cli", "train"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert re.search(r"gradient check: .* -> OK", out), out
    assert "correct: 4/4" in out, out
    loss = float(re.search(r"^train_loss: ([0-9.e-]+)$", out, re.M).group(1))
    assert loss < 0.01, out
