"""Dependencies that fit: the core imports with torch/numpy/scipy only, and whatever needs an optional
package that is missing says which extra installs it (library: MissingExtra; CLI: one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Third-party packages the core (topology, kernels, nn, train) must not import.
NOT_CORE = ("optuna", "matplotlib", "sklearn", "zarr", "pureml", "pydantic", "typer", "rich", "yaml", "click",
            "threadpoolctl", "onnx", "onnxruntime", "psycopg2", "pandas")
OPTIONAL = ("optuna", "matplotlib", "sklearn", "zarr")

# Installed at interpreter start (sitecustomize on PYTHONPATH): any import of an OPTIONAL package fails as
# it does when the package is not installed.
BLOCKER = textwrap.dedent(f"""
    import importlib.abc
    import sys

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {OPTIONAL!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _Refuse())
""")


def _python(code: str, tmp_path: Path, *, block: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if block:
        (tmp_path / "sitecustomize.py").write_text(BLOCKER)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_core_imports_only_torch_numpy_scipy(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        import sparseforge.topology, sparseforge.kernels, sparseforge.nn, sparseforge.train
        import sparseforge.nn.zoo, sparseforge.topology.degrees
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    r = _python(code, tmp_path, block=False)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert {"torch", "numpy", "sparseforge"} <= loaded
    assert not loaded & set(NOT_CORE), f"core imported {sorted(loaded & set(NOT_CORE))}"


def test_missing_extras_are_named_by_the_library(tmp_path):
    code = textwrap.dedent("""
        import torch
        from sparseforge.errors import MissingExtra
        from sparseforge.nn.zoo import build_model
        from sparseforge.topology import design

        # the core works without any optional package
        m = build_model("mlp", (16,), 4, width=[8], density=0.5)
        assert m(torch.zeros(2, 16)).shape == (2, 4)
        assert design((16, 8, 4), density=0.5).edges > 0

        def extra(fn):
            try:
                fn()
            except MissingExtra as e:
                return str(e)
            raise AssertionError(f"{fn} did not raise MissingExtra")

        print(extra(lambda: __import__("sparseforge.search")))
        from sparseforge.runs.plots import subplots
        print(extra(subplots))
        from sparseforge.data import load_dataset
        print(extra(lambda: load_dataset("digits")))
    """)
    r = _python(code, tmp_path, block=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, extra, dist in zip(lines, ("search", "plots", "digits"), ("optuna", "matplotlib", "scikit-learn")):
        assert f"pip install 'sparseforge[{extra}]'" in line and dist in line, line


def _console_script() -> Path:
    exe = Path(sys.executable).parent / "sparseforge"
    if not exe.exists():
        pytest.skip("the sparseforge console script is not installed next to this interpreter")
    return exe


def test_cli_names_the_missing_extra(tmp_path):
    exe = _console_script()
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    run = lambda *args: subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,  # noqa: E731
                                       timeout=300, cwd=tmp_path)
    helped = run("--help")
    assert helped.returncode == 0 and "search" in helped.stdout, helped.stderr
    r = run("search", "run", "tiny-digits", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2, r.stdout + r.stderr
    text = " ".join(r.stderr.split())
    assert "pip install 'sparseforge[search]'" in text and "optuna" in text
    assert "Traceback" not in r.stderr and text.count("error") == 1
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
