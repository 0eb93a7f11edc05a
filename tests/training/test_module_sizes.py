"""Issue 13's size rule for the training side and the run folder: no module over 400 lines, no
entry module (one with ``@hydra.main``) over 150."""

from __future__ import annotations

from pathlib import Path

import pytest

import vin_ocr

ROOT = Path(vin_ocr.__file__).parent
MODULES = sorted([*(ROOT / "training").glob("*.py"), ROOT / "run_folder.py", ROOT / "errors.py"])


def _is_entry(text: str) -> bool:
    return any(line.startswith("@hydra.main(") for line in text.splitlines())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_size(path):
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    limit = 150 if _is_entry(text) else 400
    assert lines <= limit, f"{path.relative_to(ROOT)}: {lines} lines > {limit}"


def test_the_entries_are_the_thin_ones():
    entries = {p.name for p in MODULES if _is_entry(p.read_text(encoding="utf-8"))}
    assert entries == {"hf_finetune.py", "merge.py"}
