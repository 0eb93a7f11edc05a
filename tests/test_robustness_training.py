"""Bad inputs to training, prepare and synth, as a user gives them: each ends with one short
``error: ...`` (exit code non-zero, no traceback), names what is wrong and where, and leaves the
output folder as it was. Small inputs; nothing here trains except the two overwrite cases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

import vin_ocr
from vin_ocr.training import hf_finetune

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.tiny=true", "hardware.device=cpu", "export_onnx=false"]
SMOKE = [*TINY, "debug=smoke", "data.test=[]"]
GOOD = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001", "JHMCM56557C404453", "5YJ3E1EA7KF317000"]


def _cfg(config: str, overrides: list[str]):
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose(config, overrides=overrides)


def _manifest(path: Path, vins: list[str], missing: int | None = None) -> Path:
    """A manifest of small line images, one per VIN (``missing``: that row's image absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, vin in enumerate(vins):
        image = path.parent / f"{path.stem}_{i}.png"
        if i != missing:
            Image.new("RGB", (96, 24), (40 * i % 256, 90, 200)).save(image)
        rows.append(json.dumps({"image": image.name, "vin": vin, "crop": True}))
    path.write_text("\n".join(rows) + "\n")
    return path


def _user_data(tmp: Path, train: list[str], val: list[str], test: list[str] | None = None):
    over = [
        f"data.train={_manifest(tmp / 'data' / 'train.jsonl', train)}",
        f"data.val={_manifest(tmp / 'data' / 'val.jsonl', val)}",
        "data.synth_train=4",
    ]
    if test is not None:
        over.append(f"data.test=[{_manifest(tmp / 'data' / 'test.jsonl', test)}]")
    return ["data=user", *TINY, "data.test=[]", *over]


def _empty(path: Path) -> Path:
    path.write_text("")
    return path


def _unwritable(tmp: Path) -> Path:
    """A folder this process cannot write into (root ignores file modes: /sys refuses it)."""
    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def _broken_checkpoints(run: Path) -> None:
    for step in (2, 4):
        ckpt = run / "checkpoints" / f"step_{step:06d}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"\0" * 10)
        state = {"step": step, "history": [], "files": {"model.safetensors": 1000}}
        (ckpt / "trainer_state.json").write_text(json.dumps(state))


# (id, overrides given tmp_path and the run folder, what the one-line error must say)
CASES = [
    ("unknown top-level key", lambda t, r: [*SMOKE, "+batchsize=4"],
     r"unknown config key 'batchsize' \(did you mean training\.batch_size\?\)"),
    ("unknown training key", lambda t, r: [*SMOKE, "+training.max_step=2"],
     r"unknown config key 'training\.max_step' \(did you mean training\.max_steps\?\)"),
    ("hub push without repo id", lambda t, r: [*SMOKE, "hub.push=true"],
     r"hub\.push=true needs hub\.repo_id=org/name"),
    ("hub push without token", lambda t, r: [*SMOKE, "hub.push=true", "hub.repo_id=me/vin"],
     r"no Hugging Face token: set HF_TOKEN"),
    ("finished run folder", lambda t, r: (r.mkdir(), (r / "run.json").write_text("{}"), SMOKE)[2],
     r"already holds a finished run: training\.resume=auto continues it, overwrite=true"),
    ("unfinished run folder", lambda t, r: (_broken_checkpoints(r), SMOKE)[1],
     r"already holds an unfinished run's checkpoints"),
    ("folder holding other files", lambda t, r: (r.mkdir(), (r / "notes.txt").write_text("x"),
                                                 SMOKE)[2], r"already holds files \(notes\.txt\)"),
    ("every checkpoint damaged", lambda t, r: (_broken_checkpoints(r),
                                               [*SMOKE, "training.resume=auto"])[1],
     r"resume=auto: no intact checkpoint .*step_000004: model\.safetensors has 10 bytes"),
    ("missing train image", lambda t, r: [*_user_data(t, GOOD[:2], GOOD[2:]),
                                          f"data.train={_manifest(t / 'm' / 'tr.jsonl', GOOD[:2], missing=1)}"],  # noqa: E501
     r"data\.train: 1 problem\(s\) in .*tr\.jsonl:\n  .*tr\.jsonl:2: .*tr_1\.png: image file not found"),  # noqa: E501
    ("label with O", lambda t, r: _user_data(t, ["1M8GDM9AXKP04278O", GOOD[1]], GOOD[2:]),
     r"train\.jsonl:1: label '1M8GDM9AXKP04278O' has characters a VIN never uses \('O'"),
    ("empty val manifest", lambda t, r: [*_user_data(t, GOOD[:2], GOOD[2:]),
                                         f"data.val={_empty(t / 'empty.jsonl')}"],
     r"data\.val: .*empty\.jsonl has no samples"),
    ("empty test manifest", lambda t, r: [*_user_data(t, GOOD[:2], GOOD[2:]),
                                          f"data.test=[{_empty(t / 'e.jsonl')}]"],
     r"data\.test \(.*e\.jsonl\): .*e\.jsonl has no samples"),
    ("no validation at all", lambda t, r: [*SMOKE, "data.synth_val=0"],
     r"no validation samples: set data\.val to a manifest or data\.synth_val > 0"),
    ("train/val VIN overlap", lambda t, r: _user_data(t, GOOD[:3], GOOD[2:]),
     r"1 VIN\(s\) are in both .*train\.jsonl and .*val\.jsonl \(e\.g\. JHMCM56557C404453\)"),
    ("missing test manifest", lambda t, r: [*SMOKE, f"data.test=[{t / 'nope.jsonl'}]"],
     r"nope\.jsonl: manifest not found"),
]  # fmt: skip


def test_a_training_value_of_the_wrong_type_fails_while_composing():
    """The training schema (vin_ocr.config) refuses it before the run starts, naming the key."""
    with pytest.raises(Exception, match=r"training\.max_steps"):
        _cfg("train", [*SMOKE, "training.max_steps=lots"])


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, make, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    run = tmp_path / "run"
    overrides = make(tmp_path, run)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        hf_finetune.main(_cfg("train", [*overrides, f"run_dir={run}"]))
    text = str(exit_.value.code)
    assert text.startswith("error: ") and len(text) < 600, text
    assert re.search(message, text), text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unwritable_run_folder(tmp_path):
    run = _unwritable(tmp_path) / "run"
    with pytest.raises(SystemExit, match=r"error: cannot write into run_dir .*: choose another"):
        hf_finetune.main(_cfg("train", [*SMOKE, f"run_dir={run}"]))
    assert not run.exists()


def test_model_that_needs_the_hub_suggests_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    over = ["model=lfm2_vl_450m", "training=lora", "hardware.device=cpu", "debug=smoke",
            "data.test=[]", f"run_dir={tmp_path / 'run'}"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        hf_finetune.main(_cfg("train", over))
    text = str(exit_.value.code)
    assert "could not load LFM2-VL" in text and "HF_HUB_OFFLINE=1" in text
    assert "model.tiny=true" in text and "model.checkpoint=LOCAL_FOLDER" in text


def test_short_label_is_a_warning_naming_it(tmp_path, caplog):
    from vin_ocr.training.data import read_checked

    path = _manifest(tmp_path / "train.jsonl", [GOOD[0], GOOD[1][:16]])
    assert len(read_checked(path, "data.train")) == 2
    assert f"train.jsonl:2: label '{GOOD[1][:16]}' has 16 characters, not 17" in caplog.text


@pytest.mark.slow
def test_finished_run_is_refused_then_replaced_with_overwrite(tmp_path):
    run = tmp_path / "run"
    first = hf_finetune.train(_cfg("train", [*SMOKE, f"run_dir={run}"]))
    assert (run / "run.json").is_file()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="already holds a finished run"):
        hf_finetune.main(_cfg("train", [*SMOKE, f"run_dir={run}", "seed=1"]))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    again = hf_finetune.train(_cfg("train", [*SMOKE, f"run_dir={run}", "seed=1", "overwrite=true"]))
    assert json.loads((run / "run.json").read_text())["seed"] == 1
    assert first.run_dir == again.run_dir
    assert "removed the previous run's" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("synth", ["kind=scenery"], r"kind='scenery'; expected one of line, scene, mixed"),
        ("synth", ["n=-5"], r"n=-5: the number of images to render must be >= 0"),
    ],
)
def test_bad_synth_options_are_one_line(tmp_path, config, overrides, message):
    from vin_ocr.data import synth

    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=message):
        synth.main(_cfg(config, [f"out={out}", *overrides]))
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("vin_ocr.training.hf_finetune", [*SMOKE, "+batchsize=4"], "unknown config key"),
        ("vin_ocr.data.synth", ["out=OUT", "kind=scenery"], "kind='scenery'"),
        ("vin_ocr.data.prepare", ["source.path=SRC", "out=RO/out"], "cannot write into"),
    ],
)
def test_command_line_errors_have_no_traceback(tmp_path, module, args, message):
    args = [
        a.replace("OUT", str(tmp_path / "o")).replace("SRC", str(tmp_path))
        .replace("RO", str(_unwritable(tmp_path) if "RO" in a else ""))
        for a in args
    ]  # fmt: skip
    if module.endswith("hf_finetune"):
        args.append(f"run_dir={tmp_path / 'run'}")
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr[-2000:]
