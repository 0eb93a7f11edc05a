"""The ``vin-ocr`` console script forwards to the package's Hydra entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from vin_ocr.cli import COMMANDS, main, usage


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_names_a_runnable_module(command):
    module = COMMANDS[command]
    spec = importlib.util.find_spec(module)
    assert spec is not None, module
    if spec.submodule_search_locations is not None:  # a package: python -m needs __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_help_and_unknown_command(capsys):
    main(["--help"])
    assert "python -m vin_ocr.training.hf_finetune" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        main(["trian"])
    assert all(name in usage() for name in COMMANDS)


def test_overrides_reach_hydra_untouched():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vin_ocr.cli",
            "eval",
            "engine=tesseract",
            "limit=3",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "limit: 3" in out and "TesseractEngine" in out
