"""CLI fuzz: a few hundred bad command lines, drawn from every command's own options, through the installed
``sparseforge`` script in subprocesses. None may print a traceback; every one must fail with exit status 2
and an ``error:`` line (a user error), never exit 0 or crash with an internal error.

The variants come from the real command tree (every option of every command), so a new option is fuzzed
without touching this file; values are bad for the option's type (not numbers, infinite, negative, files
that are directories or binary, ...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SCRIPT = shutil.which("sparseforge", path=str(Path(sys.executable).parent))

# Positional arguments a command needs before its options are looked at.
BASE = {
    ("study",): ["junction-densities"],
    ("search", "run"): ["tiny-digits"],
    ("search", "create"): ["tiny-digits", "--storage", "{tmp}/journal.log"],
    ("search", "compare"): ["tiny-digits"],
    ("search", "worker"): ["--storage", "{tmp}/missing.log", "--study", "nope"],
}
# Bad values per option where the type alone does not say what is bad (any text is some name).
TEXT = {
    "--net": ["abc", "0,10", "784"], "--fan-out": ["abc", "0,10", "99999,10"], "--fan-in": ["abc", "0"],
    "--density": ["0", "2", "-20%", "nan"], "--densities": ["0", "2", "nan"], "--group-densities": ["0", "nan"],
    "--family": ["abc"], "--dataset": ["cifar10", "imagenet", ""], "--optimizer": ["rmsprop"], "--clock": ["abc"],
    "--mode": ["abc"], "--interleaver": ["abc", "4"], "--radices": ["abc", "0", ";"], "--widths": ["abc", "0"],
    "--z": ["abc", "0,0", "7,7"], "--batches": ["abc", "0"], "--threads": ["abc", "0"],
    "--sparsities": ["abc", "1", "nan"], "--retrain-sparsities": ["0", "inf"], "--methods": ["abc"],
    "--scope": ["abc"], "--schedule": ["abc"], "--parts": ["abc"], "--retrain-seeds": ["abc", "-1"],
    "--bench-batches": ["abc", "0"], "--word-bits": ["abc", "1", "8,8"], "--int-bits": ["abc", "-1"],
    "--rounding": ["abc"], "--hidden": ["tanh"], "--recipe": ["bogus", ""], "--sampler": ["abc"],
    "--samplers": ["abc", "gp,abc"], "--seeds": ["abc", "-1"], "--setting": ["huge"],
    "--storage": ["{tmp}/adir", "{tmp}/binary.bin"],
}
# Options whose any value is a legitimate choice (the run would start): fuzzed through the other options.
ANY_VALUE = {("search", "run", "--study"), ("search", "create", "--study"), ("search", "worker", "--study")}
INPUT_FILES = ["{tmp}/missing.yaml", "{tmp}/adir", "{tmp}/binary.bin", "{tmp}/empty.yaml", "{tmp}/comments.yaml",
               "{tmp}/dupkeys.yaml", "{tmp}/list.yaml", "{tmp}/unknown_key.yaml"]
OUTPUT_DIRS = ["{tmp}/afile.txt"]
OUTPUT_FILES = ["{tmp}/adir", "{tmp}/afile.txt/x.json"]
INPUT_DIRS = ["{tmp}/missing_dir", "{tmp}/afile.txt"]
INTS, FLOATS = ["-1"], ["inf", "nan", "-1"]  # not-a-number text is the parser's error: see "without a value"


def _commands():
    import typer

    from sparseforge.cli.main import app

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    return list(walk(typer.main.get_command(app), ()))


def _path_values(path: tuple, opt: str, name: str) -> list[str]:
    if opt in ("--config",) or (path[0] == "study" and opt == "NAME"):
        return INPUT_FILES
    if opt in ("--from-run", "--baseline-from"):
        return INPUT_DIRS
    if opt in ("--data-root",):
        return INPUT_DIRS + ["{tmp}/binary.bin"]
    if opt in ("--json", "--plot", "--paths-plot"):
        return OUTPUT_FILES
    return OUTPUT_DIRS  # --run-dir, --out-dir


def variants() -> list[tuple[str, list[str]]]:
    """``(label, argv)`` for every bad command line."""
    out: list[tuple[str, list[str]]] = [
        ("unknown command", ["frobnicate"]), ("unknown global option", ["--frob"]),
        ("config: directory", ["train", "--config", "{tmp}/adir"]),
        ("positional where none", ["train", "extra"]),
        ("not an integer", ["train", "--epochs", "abc"]), ("not a number", ["hw", "plan", "--clock-mhz", "abc"]),
    ]
    for path, cmd in _commands():
        base = list(path) + BASE.get(path, [])
        out.append((f"{' '.join(path)}: unknown option", base + ["--no-such-option", "1"]))
        for k, p in enumerate(cmd.params):
            if type(p).__name__ == "TyperArgument":
                if path == ("study",):
                    out += [(f"study NAME {v}", list(path) + [v]) for v in INPUT_FILES + ["nope"]]
                elif p.required:
                    out.append((f"{' '.join(path)}: missing {p.name}", list(path)))
                    out += [(f"{' '.join(path)} {p.name}={v}", list(path) + [v]) for v in INPUT_FILES[:3] + ["nope"]]
                continue
            opt = max(p.opts, key=len)
            if opt == "--help" or (*path, opt) in ANY_VALUE:
                continue
            kind = p.display_type_rich(ctx=None) or ""
            if p.is_flag:
                values = [None]
            elif "bool" in kind:
                values = ["maybe"]
            elif "int" in kind:
                values = INTS
            elif "float" in kind:
                values = FLOATS
            elif "path" in kind:
                values = _path_values(path, opt, p.name)
            else:
                values = TEXT.get(opt, ["abc"])
            for v in values:
                argv = base + ([f"{opt}=maybe"] if v is None else [opt, v])
                out.append((f"{' '.join(path)} {opt} {v!r}", argv))
            if not p.is_flag and k < 2:  # a missing value is the parser's error: a few per command suffice
                out.append((f"{' '.join(path)} {opt} without a value", base + [opt]))
    return out


def _fixtures(tmp: Path) -> None:
    (tmp / "adir").mkdir()
    (tmp / "afile.txt").write_text("not a directory\n")
    (tmp / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp / "empty.yaml").write_text("")
    (tmp / "comments.yaml").write_text("# only a comment\n\n# and another\n")
    (tmp / "dupkeys.yaml").write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "unknown_key.yaml").write_text("bogus_section:\n  x: 1\n")


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "80", "SPARSEFORGE_DEBUG": ""}
    try:
        r = subprocess.run([SCRIPT, *argv], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        return -1, "timed out after 120 s (a bad value was accepted and the command ran)"
    return r.returncode, r.stdout + r.stderr


def _check(tmp_path: Path, every: int) -> None:
    _fixtures(tmp_path)
    cases = [(label, [a.replace("{tmp}", str(tmp_path)) for a in argv]) for label, argv in variants()]
    assert len(cases) >= 300, len(cases)
    cases = cases[::every]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: _run(c[1], tmp_path), cases))
    bad = []
    for (label, argv), (rc, output) in zip(cases, results):
        first_error = next((line for line in output.splitlines() if line.startswith("error:")), None)
        if "Traceback" in output or rc != 2 or first_error is None or "internal error" in output:
            bad.append(f"{label}: rc={rc} argv={argv}\n    {output.strip()[-400:]}")
    print(f"fuzzed {len(cases)} command lines; {len(bad)} bad")  # noqa: T201 - the count the report quotes
    assert not bad, f"{len(bad)} of {len(cases)} bad command lines misbehaved:\n" + "\n".join(bad)


@pytest.mark.skipif(SCRIPT is None, reason="the sparseforge console script is not installed")
def test_a_quarter_of_the_bad_command_lines(tmp_path):
    """Every 4th variant (about 100, a minute or two on 2 idle cores): the default suite."""
    _check(tmp_path, every=4)


@pytest.mark.slow
@pytest.mark.skipif(SCRIPT is None, reason="the sparseforge console script is not installed")
def test_every_bad_command_line(tmp_path):
    """All of them (about 400 subprocesses, several minutes on 2 cores): ``make test-all``."""
    _check(tmp_path, every=1)
