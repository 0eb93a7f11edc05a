"""The synthetic renderer, its augmentations, fonts, CLI and the bundled sample set."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

import vin_ocr
from vin_ocr import vin as vinlib
from vin_ocr.data import augment as aug
from vin_ocr.data import fonts, synth
from vin_ocr.data.sample import Sample, read_manifest
from vin_ocr.data.synth.glyphs import _code39

NO_AUG = {"augment": {"strength": 0.0}}


def _ink_spread(img: Image.Image) -> float:
    """Standard deviation of the grey levels: near 0 for a blank region."""
    return float(np.asarray(img.convert("L"), dtype=np.float32).std())


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_and_index_give_the_same_image_in_any_order():
    first = [synth.render_sample(i, seed=7) for i in (3, 11, 5)]
    again = [synth.render_sample(i, seed=7) for i in (5, 3, 11)]
    by_index = dict(zip((3, 11, 5), first, strict=True))
    for i, (img, vin, meta) in zip((5, 3, 11), again, strict=True):
        img0, vin0, meta0 = by_index[i]
        assert vin == vin0 and meta == meta0
        assert img.tobytes() == img0.tobytes()


def test_different_index_or_seed_gives_a_different_sample():
    a, vin_a, _ = synth.render_sample(0, seed=1)
    b, vin_b, _ = synth.render_sample(1, seed=1)
    c, vin_c, _ = synth.render_sample(0, seed=2)
    assert len({vin_a, vin_b, vin_c}) == 3
    assert a.tobytes() != b.tobytes() and a.tobytes() != c.tobytes()


def test_generate_is_identical_with_one_or_two_worker_processes(tmp_path):
    one = synth.generate(tmp_path / "one", 6, seed=3, kind="mixed", workers=1, image_format="png")
    two = synth.generate(tmp_path / "two", 6, seed=3, kind="mixed", workers=2, image_format="png")
    s1, s2 = read_manifest(one), read_manifest(two)
    assert [s.vin for s in s1] == [s.vin for s in s2]
    assert [s.meta for s in s1] == [s.meta for s in s2]
    for a, b in zip(s1, s2, strict=True):
        assert a.image.read_bytes() == b.image.read_bytes()
    # ... and the same pixels as rendering in memory.
    img, vin, _ = synth.render_sample(4, seed=3, cfg={"kind": "mixed"})
    assert s1[4].vin == vin
    assert np.array_equal(np.asarray(s1[4].load_image()), np.asarray(img))


# --- looks, kinds, VINs ----------------------------------------------------------------------


@pytest.mark.parametrize("look", synth.LOOKS)
def test_every_look_renders_valid_vin_line_crops(look):
    for i in range(6):
        img, vin, meta = synth.render_sample(i, seed=0, look=look, kind="line")
        assert img.mode == "RGB"
        assert 32 <= img.height <= 64
        assert 5.0 <= img.width / img.height <= 14.0, (img.size, meta)
        assert vinlib.is_valid(vin), vinlib.validate(vin).reasons
        assert meta["look"] == look and meta["kind"] == "line" and "box" not in meta
        assert meta["region"] == vinlib.region(vin)
        assert meta["font"] in fonts.FONTS
        assert _ink_spread(img) > 5.0  # something is drawn


@pytest.mark.parametrize("look", synth.LOOKS)
def test_scene_boxes_lie_inside_the_image_and_hold_the_vin_line(look):
    for i in range(2):
        img, vin, meta = synth.render_sample(i, seed=0, look=look, kind="scene")
        assert vinlib.is_valid(vin)
        assert 480 <= img.width <= 960 and img.height > 150
        x0, y0, x1, y1 = meta["box"]
        assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height
        # A VIN line: long and thin, a small part of the scene, with ink in it.
        assert (x1 - x0) > 4 * (y1 - y0)
        assert (y1 - y0) < img.height / 3
        region = img.crop((x0, y0, x1, y1))
        assert _ink_spread(region) > 8.0


@pytest.mark.parametrize("look", synth.LOOKS)
def test_scene_box_holds_exactly_where_the_vin_is_drawn(look, monkeypatch):
    """Change only the VIN's last four digits (same random draws): every changed pixel is inside
    the recorded box."""
    cfg = {"augment": {"strength": 0.0}}
    real = vinlib.random_vin

    def other_digits(rng, region=None):
        v = real(rng, region)
        return v[:13] + "".join(str((int(c) + 5) % 10) for c in v[13:])

    for i in range(2):
        img, vin, meta = synth.render_sample(i, seed=6, cfg=cfg, look=look, kind="scene")
        monkeypatch.setattr(vinlib, "random_vin", other_digits)
        img2, vin2, _ = synth.render_sample(i, seed=6, cfg=cfg, look=look, kind="scene")
        monkeypatch.undo()
        assert vin2 != vin and vin2[:13] == vin[:13]
        diff = (
            np.abs(np.asarray(img, dtype=np.int16) - np.asarray(img2, dtype=np.int16)).max(axis=2)
            > 24
        )
        x0, y0, x1, y1 = meta["box"]
        if look == "sticker":  # the Code 39 barcode below the text encodes the VIN too
            diff[y1 + 2 :] = False
        inside = diff[y0:y1, x0:x1].sum()
        assert inside > 50, (look, i)  # the digits did change there
        assert inside >= 0.98 * diff.sum(), (look, i, int(inside), int(diff.sum()))


def test_mixed_kind_and_region_restriction():
    cfg = {"kind": "mixed", "scene_share": 0.5, "regions": ["china", "europe"]}
    kinds, regions = set(), set()
    for i in range(12):
        _, _, meta = synth.render_sample(i, seed=9, cfg={**cfg, **NO_AUG})
        kinds.add(meta["kind"])
        regions.add(meta["region"])
    assert kinds == {"line", "scene"}
    assert regions <= {"china", "europe"}


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="kind='lines'"):
        synth.to_config({"kind": "lines"})
    with pytest.raises(ValueError, match="unknown look 'stampd'"):
        synth.to_config({"looks": ["stampd"]})
    with pytest.raises(ValueError, match="unknown key"):
        synth.to_config({"lookz": ["plate"]})
    with pytest.raises(ValueError, match="region"):
        synth.to_config({"regions": ["mars"]})
    with pytest.raises(ValueError, match="seed and index"):
        synth.render_sample(-1, seed=0)


def test_synth_dataset_is_a_sequence_of_rendered_samples():
    ds = synth.SynthDataset(5, seed=2)
    assert len(ds) == 5
    img, vin, _ = ds[1]
    img2, vin2, _ = synth.render_sample(1, seed=2)
    assert vin == vin2 and img.tobytes() == img2.tobytes()
    assert ds[-1][1] == ds[4][1]
    with pytest.raises(IndexError):
        ds[5]
    s = ds.sample(1)
    assert isinstance(s, Sample) and s.vin == vin and s.source == "synth" and s.crop is True
    assert s.load_image().size == img.size


# --- writing ---------------------------------------------------------------------------------


def test_generate_writes_a_manifest_that_reads_back(tmp_path):
    path = synth.generate(
        tmp_path / "out", 8, seed=5, kind="mixed", workers=1, cfg={"scene_share": 0.5}
    )
    assert path == tmp_path / "out" / "manifest.jsonl"
    samples = read_manifest(path)
    assert len(samples) == 8
    assert not list((tmp_path / "out").rglob(".*.tmp"))
    for i, s in enumerate(samples):
        assert s.source == "synth" and vinlib.is_valid(s.vin)
        assert s.image.is_file() and s.image.name == f"{i:06d}.jpg"
        assert s.vin not in s.image.name
        assert s.meta["look"] in synth.LOOKS and s.meta["region"] in vinlib.REGIONS
        with Image.open(s.image) as im:
            size = im.size
        if s.crop:
            assert s.box is None and 32 <= size[1] <= 64
        else:
            assert s.crop is False and s.box is not None
            assert 0 <= s.box[0] < s.box[2] <= size[0] and 0 <= s.box[1] < s.box[3] <= size[1]
    assert {s.crop for s in samples} == {True, False}


def test_cli_function_on_a_handful_of_images(tmp_path):
    with initialize_config_dir(config_dir=str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "synth",
            overrides=[
                f"out={tmp_path / 'cli'}",
                "n=3",
                "workers=1",
                "kind=scene",
                "looks=[sticker]",
                "image_format=png",
            ],
        )
        with pytest.raises(Exception, match="lookz"):
            compose("synth", overrides=[f"out={tmp_path}", "lookz=[plate]"])
    path = synth.run(cfg)
    samples = read_manifest(path)
    assert [s.meta["look"] for s in samples] == ["sticker"] * 3
    assert all(s.image.suffix == ".png" and s.box is not None for s in samples)
    # The config file's values are the schema's defaults (one source of truth, no drift).
    schema = OmegaConf.structured(synth.SynthRun)
    with initialize_config_dir(config_dir=str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        plain = compose("synth", overrides=["out=x"])
    for key in schema:
        if key != "out":
            assert plain[key] == schema[key], key


# --- fonts -----------------------------------------------------------------------------------


def test_fonts_fall_back_to_matplotlib_when_system_fonts_are_absent(tmp_path, monkeypatch):
    import matplotlib

    mpl = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    monkeypatch.setattr(fonts, "SYSTEM_FONT_DIRS", [tmp_path / "empty"])
    fonts.clear_cache()
    try:
        for name in fonts.FONTS:
            assert fonts.resolve(name).parent == mpl
        assert not fonts.is_system("ocr-b")
        assert fonts.available(["ocr-b", "liberation-mono"]) == ["ocr-b", "liberation-mono"]
        img, _, meta = synth.render_sample(0, seed=0, look="document", kind="line")
        assert img.height >= 32 and meta["font"] in fonts.FONTS
        with pytest.raises(KeyError, match="unknown font"):
            fonts.resolve("comic-sans")
    finally:
        monkeypatch.undo()
        fonts.clear_cache()


def test_system_fonts_are_used_when_present():
    found = [n for n in fonts.FONTS if fonts.is_system(n)]
    if not Path("/usr/share/fonts/truetype/dejavu").is_dir():
        pytest.skip("no system fonts here")
    assert "dejavu-sans" in found
    assert fonts.load("dejavu-sans", 20) is fonts.load("dejavu-sans", 20)  # cached


# --- augmentations ---------------------------------------------------------------------------


def _sample_image() -> Image.Image:
    img, _, _ = synth.render_sample(0, seed=0, cfg=NO_AUG, look="sticker", kind="line")
    return img


def test_each_augmentation_keeps_size_and_mode():
    img = _sample_image()
    rng = np.random.default_rng(0)
    h = aug.random_geometry(img.size, rng, 0.1, 3.0)
    outs = [
        aug.warp(img, h, aug.border_colour(img)),
        aug.lighting(img, 0.1, 1.2, 0.8),
        aug.shadow(img, rng, 0.5),
        aug.gaussian_blur(img, 1.0),
        aug.motion_blur(img, 5, 30.0),
        aug.noise(img, rng, 10.0),
        aug.jpeg(img, 40),
    ]
    for out in outs:
        assert out.size == img.size and out.mode == "RGB"
        assert out.tobytes() != img.tobytes()


def test_augment_is_deterministic_and_off_at_strength_zero():
    img = _sample_image()
    cfg = aug.AugmentConfig(p_geometry=1, p_lighting=1, p_shadow=1, p_blur=1, p_noise=1, p_jpeg=1)
    a, _ = aug.augment(img, np.random.default_rng(3), cfg)
    b, _ = aug.augment(img, np.random.default_rng(3), cfg)
    c, _ = aug.augment(img, np.random.default_rng(4), cfg)
    assert a.tobytes() == b.tobytes() != c.tobytes()
    assert a.size == img.size and a.mode == "RGB"
    off, box = aug.augment(
        img, np.random.default_rng(3), aug.AugmentConfig(strength=0), (1, 2, 3, 4)
    )
    assert off.tobytes() == img.tobytes() and box == (1, 2, 3, 4)


def test_geometry_keeps_the_whole_image_and_moves_boxes_with_it():
    w, h = 400, 300
    rng = np.random.default_rng(1)
    for _ in range(20):
        hm = aug.random_geometry((w, h), rng, 0.15, 10.0)
        corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=float) @ hm.T
        corners = corners[:, :2] / corners[:, 2:]
        assert corners.min() >= -1e-6 and corners[:, 0].max() <= w + 1e-6
        assert corners[:, 1].max() <= h + 1e-6
    assert aug.transform_box((10, 20, 30, 40), np.eye(3), (w, h)) == (10, 20, 30, 40)
    # A white square on black: its transformed box holds the warped square.
    img = Image.new("RGB", (w, h))
    img.paste((255, 255, 255), (100, 100, 200, 160))
    hm = aug.random_geometry((w, h), np.random.default_rng(5), 0.15, 8.0)
    out = np.asarray(aug.warp(img, hm, (0, 0, 0)).convert("L"))
    x0, y0, x1, y1 = aug.transform_box((100, 100, 200, 160), hm, (w, h))
    ys, xs = np.nonzero(out > 128)
    assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1


def test_code39_pattern_of_a_known_symbol():
    # '*' start/stop and '0' from the Code 39 table: bar, gap, bar... in 1-module units.
    bars = _code39("0", 1, 2)
    row = "".join(str(int(v)) for v in bars[0])
    assert row == "100010111011101" + "0" + "101000111011101" + "0" + "100010111011101"
    assert bars.shape == (2, len(row))


def test_code39_fractional_module_keeps_the_ink_and_decodes():
    import zxingcpp

    whole = _code39("1M8GDM9AXKP042788", 1, 1)[0]
    part = _code39("1M8GDM9AXKP042788", 1.3, 40)
    assert part.shape == (40, int(np.ceil(whole.size * 1.3)))
    assert part.min() >= 0 and part.max() <= 1
    assert abs(part[0].sum() - 1.3 * whole.sum()) < 1e-3  # each bar covers 1.3 px per module
    assert {round(float(v), 2) for v in part[0]} - {0.0, 1.0}  # edges fall inside pixels
    img = np.full((60, part.shape[1] + 40), 255, np.uint8)
    img[10:50, 20:-20] = (255 * (1 - part)).astype(np.uint8)
    assert [b.text for b in zxingcpp.read_barcodes(img)] == ["1M8GDM9AXKP042788"]


# --- the bundled sample set ------------------------------------------------------------------


def test_bundled_samples_are_distinct_valid_and_small():
    path = vin_ocr.SAMPLES_DIR / "manifest.jsonl"
    samples = read_manifest(path)
    crops = [s for s in samples if s.crop]
    scenes = [s for s in samples if not s.crop]
    assert len(crops) == 4 * synth.SAMPLE_SET_LINES and len(scenes) == 4 * synth.SAMPLE_SET_SCENES
    assert len({s.vin for s in samples}) == len(samples)
    assert all(vinlib.is_valid(s.vin) for s in samples)
    assert {s.meta["look"] for s in crops} == set(synth.LOOKS)
    assert {s.meta["look"] for s in scenes} == set(synth.LOOKS)
    assert {s.meta["region"] for s in crops} == set(vinlib.REGIONS)
    assert all(s.box is not None for s in scenes)
    total = sum(s.image.stat().st_size for s in samples)
    assert total < 2_000_000


@pytest.mark.slow
def test_bundled_samples_are_reproduced_by_their_command(tmp_path):
    """The same plan, seed and VINs (pixels also depend on the installed fonts)."""
    path = synth.build_sample_set(tmp_path / "samples")
    made = read_manifest(path)
    bundled = read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl")
    assert [s.vin for s in made] == [s.vin for s in bundled]
    assert [(s.meta["look"], s.crop) for s in made] == [(s.meta["look"], s.crop) for s in bundled]
    assert [s.image.name for s in made] == [s.image.name for s in bundled]


def test_random_draws_do_not_depend_on_global_random_state():
    random.seed(123)
    np.random.seed(123)
    a = synth.render_sample(2, seed=0)[1]
    random.seed(999)
    np.random.seed(999)
    assert synth.render_sample(2, seed=0)[1] == a
