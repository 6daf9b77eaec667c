"""The README's "Sparsify your own model" example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_sparsify_example_runs_as_written(tmp_path):
    text = README.read_text()
    section = text[text.index("## Sparsify your own model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "sparseforge.sparsify(" in code and len(code.strip().splitlines()) <= 12
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch.Size([32, 10]) torch.Size([4, 16, 512])" in r.stdout
    assert "| 1 | 392x784 | 10% | 9.95% | 39 / 78 |" in r.stdout  # the report table
