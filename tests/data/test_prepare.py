import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError
from PIL import Image

import vin_ocr
from vin_ocr.data.prepare import prepare
from vin_ocr.data.readers import read_hf_dataset
from vin_ocr.data.sample import read_manifest
from vin_ocr.data.validate import DataValidationError
from vin_ocr.vin import random_vin


def make_folder(root: Path, n: int = 24, bad: bool = False) -> Path:
    """n good images (2 per VIN) and labels.csv; with bad=True, a missing and an empty image."""
    import random

    rng = random.Random(0)
    vins = [random_vin(rng) for _ in range(n // 2)]
    rows = ["file,vin,camera"]
    for i in range(n):
        image = Image.new("RGB", (48, 16), (i * 10 % 256, 0, 0))
        image.putpixel((0, 0), (255, 255, 255))  # not a flat frame (that is a blank_image)
        image.save(root / f"{i}.png")
        rows.append(f"{i}.png,{vins[i // 2]},cam{i % 3}")
    if bad:
        (root / "empty.png").write_bytes(b"")
        rows += [f"missing.png,{vins[0]},cam0", f"empty.png,{vins[1]},cam1"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def cfg_for(*overrides: str):
    with initialize_config_dir(config_dir=str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("prepare", overrides=list(overrides))


def test_folder_to_jsonl(tmp_path: Path):
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", bad=True)
    out = tmp_path / "out"
    cfg = cfg_for(f"source.path={src}", f"out={out}", "seed=3")
    result = prepare(cfg)
    assert result.report.skipped == {"missing_image": 1, "unreadable_image": 1}
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    parts = {name: read_manifest(out / f"{name}.jsonl") for name in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == 24
    assert {n: len(p) for n, p in parts.items()} == {n: len(p) for n, p in result.splits.items()}
    vins = [{s.vin for s in p} for p in parts.values()]
    assert not (vins[0] & vins[1] or vins[0] & vins[2] or vins[1] & vins[2])
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"image", "vin", "source", "camera"}  # no _origin bookkeeping
    assert Path(first["image"]).is_absolute() and Path(first["image"]).is_file()
    assert "missing_image 1" in result.summary() and "labels.csv:26" in result.summary()


def test_strict_failure_writes_nothing_and_lists_every_problem(tmp_path: Path):
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", bad=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("precious\n")
    with pytest.raises(DataValidationError) as err:
        prepare(
            cfg_for(
                f"source.path={src}", f"out={out}", "strict=true", "format=parquet",
                "overwrite=true",
            )
        )  # fmt: skip
    assert "labels.csv:26: image file not found" in str(err.value)
    assert "labels.csv:27: empty file (0 bytes)" in str(err.value)
    assert (out / "train.jsonl").read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]


def test_parquet_round_trip_and_card(tmp_path: Path):
    from huggingface_hub import DatasetCard

    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", n=20)
    out = tmp_path / "out"
    cfg = cfg_for(
        f"source.path={src}", f"out={out}", "format=parquet", "split.val=0.2", "split.test=0.0"
    )
    result = prepare(cfg)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train.parquet", "val.parquet"]
    back = read_hf_dataset(str(out / "data" / "val.parquet"), image_dir=tmp_path / "imgs")
    orig = result.splits["val"]
    assert [(s.vin, s.source) for s in back] == [(s.vin, s.source) for s in orig]
    assert [s.image.read_bytes() for s in back] == [s.image.read_bytes() for s in orig]
    assert [s.meta["camera"] for s in back] == [s.meta["camera"] for s in orig]
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["image-to-text"]
    assert data["tags"] == ["vin", "ocr"] and data["size_categories"] == ["n<1K"]
    assert data["license"] == "other"
    files = data["configs"][0]["data_files"]
    assert files == [
        {"split": "train", "path": "data/train.parquet"},
        {"split": "val", "path": "data/val.parquet"},
    ]
    assert f"| val | {len(orig)} | {len(orig) // 2} | {len(orig)} |" in card.text
    assert (out / "test.jsonl").read_text() == ""  # an empty split still gets its manifest


def test_paddle_and_hf_sources(tmp_path: Path):
    import datasets

    (tmp_path / "rec").mkdir()
    Image.linear_gradient("L").resize((64, 16)).save(tmp_path / "rec" / "a.png")
    (tmp_path / "rec" / "gt.txt").write_text("a.png\t1M8GDM9AXKP042788\n")
    one = ["split.train=1", "split.val=0", "split.test=0"]  # one sample: no val/test
    cfg = cfg_for(
        "source=paddle", f"source.path={tmp_path / 'rec/gt.txt'}", f"out={tmp_path / 'o1'}", *one
    )
    assert [s.vin for s in prepare(cfg).splits["train"]] == ["1M8GDM9AXKP042788"]

    Image.linear_gradient("L").resize((64, 16)).save(tmp_path / "b.png")
    ds = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "b.png")], "vin": ["JH4KA7561PC008269"]},
        features=datasets.Features({"image": datasets.Image(), "vin": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "o2"
    cfg = cfg_for("source=hf", f"source.path={tmp_path / 'hf'}", f"out={out}", *one)
    assert cfg.source.image_dir == f"{out}/images"
    [s] = prepare(cfg).splits["train"]
    assert s.vin == "JH4KA7561PC008269" and s.source == "hf"
    assert s.image.parent == out / "images"  # the in-memory image was written under out/


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("validate.min_sid=3", ConfigCompositionException),
        ("source.lables=x.csv", ConfigCompositionException),
        ("format=xml", ConfigCompositionException),
        ("strict=maybe", ConfigCompositionException),
    ],
)
def test_typos_fail_at_start_up(tmp_path: Path, override: str, error: type):
    with pytest.raises(error) as err:
        cfg_for("source.path=x", f"out={tmp_path}", override)
    assert override.split("=")[0].split(".")[-1] in str(err.value) + str(err.value.__cause__)


def test_missing_required_keys_and_bad_ratios(tmp_path: Path):
    cfg = cfg_for(f"out={tmp_path}")
    with pytest.raises(MissingMandatoryValue, match=r"source\.path"):
        prepare(cfg)
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", n=4)
    with pytest.raises(ValueError, match="sum to 1"):
        prepare(cfg_for(f"source.path={src}", f"out={tmp_path / 'o'}", "split.train=0.9"))
    with pytest.raises((ConfigKeyError, ValidationError, ConfigCompositionException)):
        cfg_for("source.path=x", f"out={tmp_path}", "split.train=lots")


@pytest.mark.slow
def test_command_line(tmp_path: Path):
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", n=10, bad=True)
    run = [sys.executable, "-m", "vin_ocr.data.prepare", f"source.path={src}"]
    run += ["split.train=0.6", "split.val=0.2", "split.test=0.2"]  # 5 VINs: one or more each
    ok = subprocess.run(
        [*run, f"out={tmp_path / 'out'}"], capture_output=True, text=True, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert "12 samples read, 10 kept, 2 skipped" in ok.stdout
    assert (tmp_path / "out" / "train.jsonl").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no outputs/ or .hydra
    bad = subprocess.run(
        [*run, f"out={tmp_path / 'out2'}", "strict=true"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "error: data validation failed" in bad.stderr and "empty file" in bad.stderr
    assert not (tmp_path / "out2").exists()


def test_out_holding_manifests_is_refused_unless_overwrite(tmp_path: Path):
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src")
    out = tmp_path / "out"
    prepare(cfg_for(f"source.path={src}", f"out={out}"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"already holds test.jsonl, train.jsonl, val.jsonl.*"
                       r"overwrite=true"):  # fmt: skip
        prepare(cfg_for(f"source.path={src}", f"out={out}", "seed=5"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    prepare(cfg_for(f"source.path={src}", f"out={out}", "seed=5", "overwrite=true"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before


def test_too_few_vins_for_every_split_is_refused_unless_allowed(tmp_path: Path, caplog):
    (tmp_path / "src").mkdir()
    src = make_folder(tmp_path / "src", n=6)  # 3 VINs
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"split (val|test)(, test)? would be empty: 3 VIN"):
        prepare(cfg_for(f"source.path={src}", f"out={out}"))
    assert not out.exists()
    result = prepare(cfg_for(f"source.path={src}", f"out={out}", "allow_empty_splits=true"))
    assert "would be empty" in caplog.text and "allow_empty_splits=true" in caplog.text
    assert any(not part for part in result.splits.values())
    # a split given ratio 0 is meant to be empty: no complaint
    ok = ["split.train=0.5", "split.val=0.5", "split.test=0", f"out={tmp_path / 'o2'}"]
    assert prepare(cfg_for(f"source.path={src}", *ok)).splits["test"] == []


def test_unwritable_out_is_refused_before_reading(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot write into"):
        prepare(cfg_for("source.path=/nonexistent", f"out={_unwritable(tmp_path)}/out"))


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root ignores file modes: /sys refuses it)."""
    import os

    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro
