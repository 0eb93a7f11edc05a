"""Issue 13's size rule for the whole package: no module over 400 lines, no entry module (one
with ``@hydra.main``, the command a user runs) over 150."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vin_ocr

ROOT = Path(vin_ocr.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))


def _is_entry(text: str) -> bool:
    """A function decorated with ``@hydra.main(...)`` anywhere in the module."""
    return any(
        isinstance(d, ast.Call) and ast.unparse(d.func) == "hydra.main"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef)
        for d in node.decorator_list
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path):
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    limit = 150 if _is_entry(text) else 400
    assert lines <= limit, f"{path.relative_to(ROOT)}: {lines} lines > {limit}"


def test_every_command_is_a_thin_entry():
    entries = {str(p.relative_to(ROOT)) for p in MODULES if _is_entry(p.read_text("utf-8"))}
    assert entries == {
        "app/__main__.py",
        "app/export_space.py",
        "data/prepare.py",
        "data/synth/cli.py",
        "evaluation/compare.py",
        "evaluation/evaluate.py",
        "hardware/__main__.py",
        "training/export_paddle.py",
        "training/hf_finetune.py",
        "training/merge.py",
    }
