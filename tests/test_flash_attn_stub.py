"""The installable flash_attn stub: it imports, fails loudly when called, is never taken as real."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import vin_ocr
from vin_ocr.hardware import (
    AttnSupport,
    DeviceInfo,
    HardwareError,
    Probe,
    detect_flash_attn,
    resolve,
)

STUB_DIR = vin_ocr.REPO_ROOT / "stubs" / "flash_attn_stub"
CALLABLES = {
    "flash_attn": [
        "flash_attn_func",
        "flash_attn_varlen_func",
        "flash_attn_qkvpacked_func",
        "flash_attn_kvpacked_func",
        "flash_attn_with_kvcache",
    ],
    "flash_attn.flash_attn_interface": ["flash_attn_func", "flash_attn_varlen_func"],
    "flash_attn.bert_padding": ["index_first_axis", "pad_input", "unpad_input"],
    "flash_attn.layers.rotary": ["apply_rotary_emb", "RotaryEmbedding"],
    "flash_attn.ops.rms_norm": ["rms_norm", "RMSNorm"],
}


@pytest.fixture
def stub_on_path(monkeypatch):
    """The stub's source folder on sys.path, and no flash_attn left imported afterwards."""
    monkeypatch.syspath_prepend(str(STUB_DIR))
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    yield
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        del sys.modules[name]


def test_every_callable_raises_with_the_way_out(stub_on_path):
    import flash_attn

    assert flash_attn.__version__ == "0.0.0+vinocr.stub"
    assert flash_attn.__vin_ocr_stub__ is True
    for module_name, names in CALLABLES.items():
        module = importlib.import_module(module_name)
        for name in names:
            with pytest.raises(flash_attn.FlashAttnStubError) as info:
                getattr(module, name)(None)
            message = str(info.value)
            assert name in message
            assert "sdpa" in message and "pip install flash-attn" in message


def test_hardware_recognises_the_stub_and_never_picks_flash(stub_on_path):
    info = detect_flash_attn()
    assert (info.status, info.version) == ("stub", "0.0.0+vinocr.stub")
    gpu = DeviceInfo(0, "NVIDIA A100-SXM4-80GB", 80.0, 79.0, (8, 0), bf16=True)
    probe = Probe(
        "linux", "x86_64", "2.14.1", "13.0", True, False, False, (gpu,), 64.0, 60.0, 16,
        flash_attn=info,
    )  # fmt: skip
    hw = resolve(None, probe, AttnSupport())
    assert (hw.device, hw.dtype, hw.attn_implementation) == ("cuda", "bf16", "sdpa")
    assert "stub" in hw.reasons[2]
    with pytest.raises(HardwareError, match=r"stub.*pip install flash-attn"):
        resolve({"attn_implementation": "flash_attention_2"}, probe, AttnSupport())


#: transformers' own check, with CUDA reported available (on a CPU machine it is always False
#: before it even looks at the package): prints the stub marker and the verdict.
FA2_CHECK = (
    "import transformers.utils.import_utils as iu, flash_attn;"
    "iu.is_torch_cuda_available = lambda: True;"
    "print(getattr(flash_attn, '__vin_ocr_stub__', False), iu.is_flash_attn_2_available())"
)


def fake_real_flash_attn(site: Path) -> Path:
    """A ``flash_attn`` package installed as the real distribution (flash-attn 2.7.4)."""
    (site / "flash_attn").mkdir(parents=True)
    (site / "flash_attn" / "__init__.py").write_text("__version__ = '2.7.4'\n")
    dist = site / "flash_attn-2.7.4.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flash-attn\nVersion: 2.7.4\n")
    (dist / "top_level.txt").write_text("flash_attn\n")
    (dist / "RECORD").write_text("flash_attn/__init__.py,,\n")
    return site


def fa2_check(path: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run(
        [sys.executable, "-c", FA2_CHECK], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_transformers_does_not_take_the_stub_for_flash_attn_2(tmp_path):
    # The control: the same check, CUDA faked, says yes to a real flash-attn 2 distribution ...
    assert fa2_check(fake_real_flash_attn(tmp_path / "real")) == ["False", "True"]
    # ... and no to the stub's source folder.
    assert fa2_check(STUB_DIR) == ["True", "False"]


@pytest.mark.slow
def test_the_stub_builds_and_installs_as_a_wheel(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(STUB_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("flash_attn_stub-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Name: flash-attn-stub" in metadata
    assert "Version: 0.0.0+vinocr.stub" in metadata
    assert "flash_attn/bert_padding.py" in names
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    # Installed with its dist-info (the realistic case): transformers still says no flash-attn 2,
    # even where CUDA is available (faked in FA2_CHECK).
    assert fa2_check(target) == ["True", "False"]
    assert Path(target, "flash_attn", "__init__.py").is_file()
