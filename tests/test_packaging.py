"""The package installs and runs without the source tree: build the wheel, install it (not
editable) into a fresh virtual environment, and run ``vin-ocr eval`` and a ``debug=smoke``
training from a folder outside the checkout.

The fresh environment borrows the heavy dependencies (torch, transformers, ...) of the current
one through a ``.pth`` line instead of reinstalling them; a ``.pth`` path line does not run the
``.pth`` files found there, so the current environment's editable ``vin_ocr`` stays out of it.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import vin_ocr

SOURCE = vin_ocr.REPO_ROOT


def _run(args, cwd, env=None, timeout=1500):
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel of this checkout installed, and the
    environment variables to run it with (no PYTHONPATH, offline)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"  # a copy: the build writes build/ and *.egg-info beside pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(SOURCE / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(SOURCE / "vin_ocr", src / "vin_ocr", ignore=ignore)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src], cwd=root)
    (wheel,) = dist.glob("vin_ocr-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    # pip runs inside the fresh interpreter, which sees nothing of this environment yet
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=root)
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root
    ).stdout.strip()
    borrowed = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (Path(purelib) / "borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline")
    work = root / "work"  # outside the checkout: nothing relative to the source tree
    work.mkdir()
    return venv, env, work


def test_the_installed_package_is_the_wheel_with_its_configs(installed):
    venv, env, work = installed
    probe = (
        "import json, vin_ocr; print(json.dumps([vin_ocr.__file__, str(vin_ocr.CONFIG_DIR), "
        "str(vin_ocr.SAMPLES_DIR)]))"
    )
    done = _run([venv / "bin" / "python", "-c", probe], cwd=work, env=env)
    module, configs, samples = map(Path, json.loads(done.stdout))
    assert module.is_relative_to(venv), module  # not the checkout's editable install
    assert not module.is_relative_to(SOURCE), module
    assert (configs / "train.yaml").is_file() and (configs / "model" / "pp_ocr.yaml").is_file()
    # every bundled sample (the test set "samples" of a run) is in the installed package
    rows = [json.loads(r) for r in (samples / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == len((vin_ocr.SAMPLES_DIR / "manifest.jsonl").read_text().splitlines())
    assert all((samples / r["image"]).is_file() for r in rows)
    assert (configs.parent / "assets" / "real" / "README.md").is_file()  # the photos' credit


@pytest.mark.slow
@pytest.mark.timeout(3000)  # minutes on 2 idle cores; far more on a busy machine
def test_eval_and_smoke_training_run_outside_the_source_tree(installed):
    venv, env, work = installed
    vin_ocr_cli = venv / "bin" / "vin-ocr"
    _run([vin_ocr_cli, "eval", "limit=4", "hydra.run.dir=eval"], cwd=work, env=env)
    report = json.loads((work / "eval" / "report.json").read_text())
    assert report["n"] == 4

    _run(
        [
            vin_ocr_cli,
            "train",
            "debug=smoke",
            "model.tiny=true",
            "hardware.device=cpu",
            "run_dir=run",
            # the end-of-run test sets read the bundled samples through the same harness as
            # `vin-ocr eval` above (and every sample is in the package: the test above); two
            # more passes over their 28 scenes would cost a minute of CPU and check nothing new
            "data.test=[]",
            "export_onnx=false",
        ],
        cwd=work,
        env=env,
    )
    run = json.loads((work / "run" / "run.json").read_text())
    assert run["metrics"]["train"]["steps"] == 2
    assert (work / "run" / "model").is_dir() and (work / "run" / "README.md").is_file()
    assert run["model"]["tiny"] is True and run["family"] == "pp_ocr"
