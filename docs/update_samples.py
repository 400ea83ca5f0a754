"""Keep the sample outputs in the docs true: run the commands they show and compare or rewrite.

A sample is a fenced block between ``<!-- sample: NAME -->`` and ``<!-- /sample -->`` whose first
line is the command (``$ gamma-ray-dist ...``) and whose other lines are what it prints on stdout.
The ``timings:`` line differs from run to run and is not compared.

    python docs/update_samples.py          # rewrite the samples from fresh runs
    python docs/update_samples.py --check  # exit 1 if a sample differs (tests/test_docs.py does this)
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "quickstart.md"]
SAMPLE = re.compile(r"(<!-- sample: (?P<name>[\w-]+) -->\n```\n)(?P<body>.*?)(```\n<!-- /sample -->)", re.S)
VARIABLE = ("timings:",)


def run_command(command: str) -> str:
    """stdout of ``$ gamma-ray-dist ...`` run with this checkout, in an empty temporary directory."""
    args = shlex.split(command)
    assert args[0] == "gamma-ray-dist", command
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([sys.executable, "-m", "gamma_ray_dist", *args[1:]], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _comparable(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if not line.startswith(VARIABLE)]


def samples(path: Path):
    """``(match, command, printed lines)`` of every sample block in ``path``."""
    for match in SAMPLE.finditer(path.read_text()):
        first, _, rest = match["body"].partition("\n")
        yield match, first.removeprefix("$ ").strip(), rest


def stale_samples() -> list[str]:
    """Descriptions of the samples whose output no longer matches a fresh run (empty: all true)."""
    stale = []
    for path in DOCS:
        for match, command, printed in samples(path):
            fresh = run_command(command)
            if _comparable(printed) != _comparable(fresh):
                stale.append(f"{path.name} sample {match['name']!r} ({command}):\n--- docs\n{printed}--- fresh run\n{fresh}")
    return stale


def update() -> None:
    for path in DOCS:
        text = path.read_text()
        for match, command, _ in reversed(list(samples(path))):
            body = f"$ {command}\n" + "\n".join(line.rstrip() for line in run_command(command).splitlines()) + "\n"
            text = text[:match.start("body")] + body + text[match.end("body"):]
        path.write_text(text)


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        problems = stale_samples()
        print("\n".join(problems) or "samples up to date")
        sys.exit(1 if problems else 0)
    update()
