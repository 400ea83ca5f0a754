"""The docs' sample outputs match fresh runs; the numbers and units the run writes agree with each other."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _update_samples():
    spec = importlib.util.spec_from_file_location("update_samples", ROOT / "docs" / "update_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_sample_outputs_are_what_the_commands_print():
    module = _update_samples()
    assert any(True for path in module.DOCS for _ in module.samples(path))  # the samples are found
    stale = module.stale_samples()
    assert not stale, "run `python docs/update_samples.py`:\n" + "\n".join(stale)


def test_total_time_and_units_agree_between_cli_report_and_files(tmp_path, capsys):
    from gamma_ray_dist.cli import main

    assert main(["demo", "--out", str(tmp_path), "--n-obs", "2", "--serial", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    cli_total = float(re.search(r"\btotal=([\d.]+)s", printed).group(1))
    report = (tmp_path / "report.md").read_text()
    report_total = float(re.search(r"\| \*\*total\*\* \| \*\*([\d.]+)\*\* \|", report).group(1))
    reduction_total = json.loads((tmp_path / "reduction.json").read_text())["timings"]["total"]
    assert cli_total == report_total == round(reduction_total, 2)

    amplitude = next(p for p in json.loads((tmp_path / "fit.json").read_text())["parameters"]
                     if p["name"] == "amplitude")
    assert amplitude["unit"] == "TeV-1 s-1 cm-2"  # gammapy's (FITS) format
    assert "| crab | amplitude |" in report and "| TeV-1 s-1 cm-2 |" in report
    assert "dnde [TeV-1 s-1 cm-2]" in report
    assert re.search(r"amplitude .* TeV-1 s-1 cm-2 ", printed)
