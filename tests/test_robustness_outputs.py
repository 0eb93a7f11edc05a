"""Output folders that cannot be written, for every command that writes one (prepare, eval,
training, merge, export_space): refused before any expensive work, in one ``error:`` line that
names the folder and what to do, nothing created. Two kinds of fault: a parent that is a regular
file (the folder really cannot be created, even by root) and a read-only folder, simulated by
refusing every write under it (the tests run as root in CI, which ignores file modes)."""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vin_ocr.config import compose
from vin_ocr.errors import UserError, check_writable, exit_on_user_error

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(config: str, overrides: list[str]):
    return compose(config, overrides)


def _expensive(*_: object, **__: object) -> None:
    raise AssertionError("expensive work started before the output folder was checked")


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make every write under ``folder`` fail as on a read-only mount (EACCES)."""
    root = os.path.abspath(folder)

    def inside(path: object) -> bool:
        try:
            full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except TypeError:  # a file descriptor
            return False
        return full == root or full.startswith(root + os.sep)

    def denied(path: object) -> PermissionError:
        return PermissionError(13, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]

    real_os_open, real_mkdir, real_open = os.open, os.mkdir, builtins.open

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


def _blocked(tmp: Path, fault: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """(an output folder that cannot be written, what the message must say about it)."""
    if fault == "parent is a file":
        (tmp / "afile").write_text("x")
        return tmp / "afile" / "out", "is a file, not a folder"
    ro = tmp / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    return ro / "out", "Permission denied"


def _fake_lora_run(run: Path) -> Path:
    """A run folder as merge's first checks see it (they read no weights)."""
    adapter = run / "model" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "adapter_config.json").write_text("{}")
    info = {"family": "pp_ocr", "model": {"name": "pp_ocr", "tiny": True}, "seed": 0}
    (run / "run.json").write_text(json.dumps(info))
    return run


def _prepare(tmp: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    from vin_ocr.data import prepare

    monkeypatch.setattr(prepare, "validate_samples", _expensive)
    return prepare.main, _cfg("prepare", [f"source.path={tmp}", f"out={out}"])


def _eval(tmp: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    from vin_ocr.evaluation import evaluate

    monkeypatch.setattr(evaluate, "build_engine", _expensive)
    monkeypatch.setattr(evaluate, "read_manifest", _expensive)
    return evaluate.main, _cfg("eval", [f"out_dir={out}"])


def _train(tmp: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    from vin_ocr.training import hf_finetune, start

    monkeypatch.setattr(start, "build_datasets", _expensive)
    over = ["model.tiny=true", "hardware.device=cpu", "debug=smoke", "data.test=[]"]
    return hf_finetune.main, _cfg("train", [*over, f"run_dir={out}"])


def _merge(tmp: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    from vin_ocr.training import merge

    monkeypatch.setattr(merge, "build_base", _expensive)
    run = _fake_lora_run(tmp / "run")
    return merge.main, _cfg("merge", [f"run={run}", f"out={out}", "hardware.device=cpu"])


def _space(tmp: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    from vin_ocr.app import export_space, space

    monkeypatch.setattr(space, "_write_space", _expensive)
    return export_space.main, _cfg("space", [f"out={out}"])


COMMANDS = {"prepare": _prepare, "eval": _eval, "train": _train, "merge": _merge,
            "export_space": _space}  # fmt: skip


@pytest.mark.parametrize("fault", ["parent is a file", "read-only folder"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unwritable_output_folder_is_one_line_before_any_work(
    tmp_path, monkeypatch, command, fault
):
    out, why = _blocked(tmp_path, fault, monkeypatch)
    main, cfg = COMMANDS[command](tmp_path, out, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(cfg)
    text = str(exit_.value.code)
    assert text.startswith("error: ") and "\n" not in text, text
    assert str(out) in text and why in text, text
    assert "choose another" in text, text
    assert not out.exists()


def test_check_writable_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "deeper", "out")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"out=.*f is a file, not a folder: choose another out"):
        check_writable(tmp_path / "f", "out")


def test_exit_on_user_error_keeps_real_bugs_and_names_refused_writes():
    def exit_text(error: BaseException, *errors: type[BaseException], **kw: str) -> str:
        with pytest.raises(SystemExit) as exit_, exit_on_user_error(*errors, **kw):
            raise error
        return str(exit_.value.code)

    assert exit_text(UserError("bad")) == "error: bad"
    denied = PermissionError(13, "Permission denied", "/x/y")
    assert exit_text(denied, out="out") == (
        "error: cannot write /x/y: Permission denied; choose another out="
    )
    with pytest.raises(KeyError), exit_on_user_error(ValueError):  # a bug: its traceback stays
        raise KeyError("bug")


@pytest.mark.slow
def test_training_without_run_dir_where_runs_cannot_be_created(tmp_path):
    """Hydra creates the default run folder (runs/<date>/...) before vin-ocr runs: a ``runs``
    that is a file used to give Hydra's traceback."""
    (tmp_path / "runs").write_text("not a folder")
    args = ["model.tiny=true", "hardware.device=cpu", "debug=smoke", "data.test=[]"]
    proc = subprocess.run(
        [sys.executable, "-m", "vin_ocr.training.hf_finetune", *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: run_dir=runs/") and "runs is a file" in line, line
    assert "pass run_dir=DIR" in line
    assert (tmp_path / "runs").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
