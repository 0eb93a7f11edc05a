"""The Space export as a library: :func:`export_space` writes a ready Hugging Face Space for
the demo app into a folder (and pushes it with ``push_to``). Its command line and config schema
are in :mod:`vin_ocr.app.export_space`.

Hardware ``auto`` comes from the preflight's model catalog (:func:`vin_ocr.hardware.model_spec`):
families that declare ``cpu_inference`` (PP-OCR) and the ONNX/Tesseract baselines run on
``cpu-basic``; a VLM gets the smallest GPU tier whose memory holds its bf16 weights with inference
headroom, or ``zero-a10g`` with ``zero_gpu=true``. No token is ever written: a private model repo
needs ``HF_TOKEN`` set as a secret in the Space's settings, where ``huggingface_hub`` reads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.app.core import _ALIASES, BASELINE
from vin_ocr.data.sample import atomic_write_text
from vin_ocr.errors import UserError, check_writable
from vin_ocr.evaluation.engines import ENGINES
from vin_ocr.run_folder import MODEL_DIR, RUN_FILE

#: GPU Space tiers, cheapest first, with their GPU memory in GB.
GPU_TIERS = (("t4-small", 16.0), ("a10g-small", 24.0), ("a100-large", 80.0))
ZERO_GPU = "zero-a10g"
#: Inference memory over the bf16 weights: activations, KV cache, CUDA workspace.
INFERENCE_FACTOR = 1.25
MAX_BUNDLED_RUN_GB = 1.0
PYTHON_VERSION = "3.11"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class SpaceError(UserError):
    """An export that cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class SpaceExport:
    out: Path
    hardware: str
    why: str  # how the hardware was chosen
    files: tuple[str, ...]


# --------------------------------------------------------------------------- hardware


def pick_hardware(
    model_cfg: Any, requested: str = "auto", zero_gpu: bool = False
) -> tuple[str, str]:
    """(Space hardware flavour, why) for a ``model`` config (``None``: an ONNX/CLI baseline)."""
    from huggingface_hub import SpaceHardware

    if requested != "auto":
        known = [h.value for h in SpaceHardware]
        if requested not in known:
            raise SpaceError(f"hardware={requested!r} is not a Space hardware: {', '.join(known)}")
        return requested, "set with hardware="
    if model_cfg is None:
        return "cpu-basic", "ONNX/CPU baseline engine"
    from vin_ocr.hardware import model_spec
    from vin_ocr.hardware.estimate import BYTES, FITS_BELOW, GIB, OVERHEAD_GB
    from vin_ocr.models.registry import facts

    spec = model_spec(model_cfg)
    if facts(spec.family).cpu_inference:
        return "cpu-basic", f"{spec.name}: {spec.params / 1e6:.1f} M parameters, CPU is enough"
    need = spec.params * BYTES["bf16"] / GIB * INFERENCE_FACTOR + OVERHEAD_GB["cuda"]
    size = f"{spec.name}: {spec.params / 1e9:.2f} B parameters, ~{need:.1f} GiB to run in bf16"
    if zero_gpu:
        return ZERO_GPU, f"{size}; ZeroGPU (zero_gpu=true)"
    for tier, memory in GPU_TIERS:
        if need <= FITS_BELOW * memory:
            return tier, f"{size}; the smallest GPU tier that holds it ({memory:g} GB)"
    raise SpaceError(f"{size}: more than any single-GPU Space tier; pass hardware=...")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _looks_like_path(model: str) -> bool:
    """A local path rather than a Hub id: ./x, ../x, /x, ~/x, a/b/c, x/ or an existing a/ in a/b."""
    if model.startswith((".", "/", "~")) or model.endswith(("/", os.sep)) or model.count("/") > 1:
        return True
    return not _HUB_ID.match(model) or (Path(model).parent.is_dir() and "/" in model)


def local_run_info(run: Path) -> dict[str, Any]:
    """run.json of a finished local run folder; :class:`SpaceError` for a half-written one."""
    if not (run / RUN_FILE).is_file():
        raise SpaceError(
            f"model={run}: not a finished run folder (no {RUN_FILE}: still training, or "
            "interrupted? resume it with resume=auto, or pick a finished run)"
        )
    try:
        info = json.loads((run / RUN_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpaceError(f"model={run}: {RUN_FILE} is damaged ({e})") from None
    model_dir = run / MODEL_DIR
    weights = any(model_dir.glob("*.safetensors")) or (model_dir / "adapter").is_dir()
    if not isinstance(info, dict) or "model" not in info or not weights:
        raise SpaceError(
            f"model={run}: the run is incomplete (no {MODEL_DIR}/ weights or no model entry "
            f"in {RUN_FILE}: interrupted while saving?); finish it or pick another run"
        )
    return info


def _run_info(model: str, model_config: str | None) -> dict[str, Any] | None:
    """run.json of a local run folder or a pushed run on the Hub (None for named engines)."""
    from vin_ocr.hardware import load_model_cfg

    if _ALIASES.get(model, model) in ENGINES:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return local_run_info(path)
    if path.exists() or _looks_like_path(model):
        known = ", ".join([BASELINE, *(n for n in ENGINES if n != "checkpoint")])
        what = "is a file, not a run folder" if path.exists() else "does not exist"
        raise SpaceError(
            f"model={model}: the folder {path} {what}. model= takes a run folder, a Hub model "
            f"id (org/name) or an engine ({known})"
        )
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, RUN_FILE)).read_text())
    except Exception as exc:
        if model_config:
            return {"model": OmegaConf.to_container(load_model_cfg(model_config))}
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        why = "offline: HF_HUB_OFFLINE is set" if _offline() else f"{type(exc).__name__}: {first}"
        raise SpaceError(
            f"model={model}: no local folder {path}, and {RUN_FILE} of the Hub repo {model} "
            f"cannot be read ({why[:200]}). Pass model_config=NAME "
            "(configs/model/NAME.yaml) or hardware=FLAVOUR to size the Space, or a local run "
            "folder (hf download MODEL --local-dir DIR)"
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------- files


def requirements(hardware: str, package: str, zero_gpu: bool) -> str:
    """requirements.txt: the versions installed here, CPU torch wheels on a CPU Space."""
    version = importlib.metadata.version
    cpu = hardware.startswith("cpu")
    torch_pins = {
        name: version(name).split("+")[0] + ("+cpu" if cpu else "")
        for name in ("torch", "torchvision")
    }
    lines = [f"# Pinned to what vin-ocr {vin_ocr.__version__} was exported with."]
    if cpu:
        lines.append(f"--extra-index-url {TORCH_CPU_INDEX}")
    pins = {
        "gradio": version("gradio"),
        "huggingface_hub": version("huggingface_hub"),
        **torch_pins,
    }
    if package == "vendor":
        for req in importlib.metadata.requires("vin-ocr") or ():
            name = re.match(r"[A-Za-z0-9_.-]+", req)
            if name and "extra ==" not in req and name.group() not in pins:
                pins[name.group()] = version(name.group())
    lines += [f"{name}=={v}" for name, v in pins.items()]
    if package != "vendor":
        lines.append(package)
    if zero_gpu or hardware == ZERO_GPU:
        lines.append("spaces  # preinstalled on ZeroGPU Spaces")
    return "\n".join(lines) + "\n"


APP_TEMPLATE = '''"""{title}: a Gradio Space generated by `python -m vin_ocr.app.export_space`.

A private model repo needs HF_TOKEN set as a secret in the Space's settings (huggingface_hub reads
it from the environment); no token is stored in these files.
"""

from omegaconf import OmegaConf
{gpu_import}
from vin_ocr.app import AppConf, serve

cfg = OmegaConf.merge(OmegaConf.structured(AppConf), {settings})

if __name__ == "__main__":
    serve(cfg{gpu_arg})
'''


def app_source(settings: dict[str, Any], title: str, zero_gpu: bool) -> str:
    return APP_TEMPLATE.format(
        title=title,
        settings=repr(settings),
        gpu_import="import spaces\n" if zero_gpu else "",
        gpu_arg=", gpu=spaces.GPU" if zero_gpu else "",
    )


def readme(cfg: Any, hardware: str, why: str, hub_model: str | None) -> str:
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title=cfg.title,
        sdk="gradio",
        sdk_version=importlib.metadata.version("gradio"),
        python_version=PYTHON_VERSION,
        app_file="app.py",
        license=cfg.license,
        models=[hub_model] if hub_model else None,
        suggested_hardware=hardware,
        tags=["vin", "ocr", "vin-ocr"],
    )
    body = (
        f"# {cfg.title}\n\nReads a Vehicle Identification Number from a photo with "
        f"`{cfg.model}` and explains whether it is valid (check digit, model year, region), "
        "with the confidence per character and the region read. A second tab compares two "
        f"engines.\n\nHardware: `{hardware}` ({why}).\n\nGenerated by "
        "`python -m vin_ocr.app.export_space` (vin-ocr). A private model repo needs the "
        "`HF_TOKEN` secret in this Space's settings.\n"
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _copy_run(run: Path, dest: Path) -> None:
    size = sum(p.stat().st_size for p in (run / MODEL_DIR).rglob("*") if p.is_file())
    if size > MAX_BUNDLED_RUN_GB * 1024**3:
        raise SpaceError(
            f"{run}: {size / 1024**3:.1f} GiB of weights is too much to copy into a Space; "
            "push the run to the Hub and pass its repo id as model="
        )
    dest.mkdir()
    shutil.copy2(run / RUN_FILE, dest / RUN_FILE)
    shutil.copytree(run / MODEL_DIR, dest / MODEL_DIR)


def _write_space(cfg: Any, folder: Path) -> tuple[str, str]:
    model = str(cfg.model)
    info = _run_info(model, cfg.model_config)
    hardware, why = pick_hardware(info and info["model"], cfg.hardware, cfg.zero_gpu)
    local_run = info is not None and Path(model).expanduser().is_dir()
    if local_run:
        _copy_run(Path(model).expanduser(), folder / "run")
    space_model = "run" if local_run else model
    hub_model = None if local_run or info is None else model
    settings = {
        "model": space_model,
        "engines": list(dict.fromkeys([space_model, *map(str, cfg.engines)])),
        "custom_engines": False,  # visitors choose among these, nothing else
        "title": str(cfg.title),
        "host": "0.0.0.0",
        "port": 7860,
        "samples": cfg.package == "vendor",
    }
    if cfg.package == "vendor":
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        # the package holds its configs and the bundled samples (vin_ocr/configs, vin_ocr/assets)
        shutil.copytree(Path(vin_ocr.__file__).parent, folder / "vin_ocr", ignore=ignore)
    atomic_write_text(folder / "app.py", app_source(settings, cfg.title, cfg.zero_gpu))
    reqs = requirements(hardware, str(cfg.package), cfg.zero_gpu)
    atomic_write_text(folder / "requirements.txt", reqs)
    atomic_write_text(folder / "README.md", readme(cfg, hardware, why, hub_model))
    if "tesseract" in settings["engines"]:
        atomic_write_text(folder / "packages.txt", "tesseract-ocr\n")  # Debian packages
    return hardware, why


def export_space(cfg: Any) -> SpaceExport:
    """Write the Space into ``cfg.out`` (built in a temporary folder, then moved into place, so
    a failure leaves ``out`` as it was); push it when ``cfg.push_to`` is set."""
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise SpaceError(f"out={out} is a file; give a folder")
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise SpaceError(
            f"out={out} is not empty; choose an empty or new folder, or pass overwrite=true to "
            "replace its content"
        )
    check_writable(out, "out")
    if cfg.push_to:  # before writing anything
        _check_push_to(str(cfg.push_to))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        hardware, why = _write_space(cfg, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    files = tuple(sorted(str(p.relative_to(out)) for p in out.glob("*")))
    if cfg.push_to:
        try:
            push(out, str(cfg.push_to), hardware, bool(cfg.private))
        except Exception as e:  # network, permissions, billing: the folder is written anyway
            raise SpaceError(
                f"push to the Space {cfg.push_to} failed ({type(e).__name__}: "
                f"{str(e).strip()[:200]}); the Space folder {out} is written: push it again "
                f"with hf upload {cfg.push_to} {out} --repo-type space"
            ) from None
    return SpaceExport(out, hardware, why, files)


def _check_push_to(space_id: str) -> None:
    from huggingface_hub import get_token

    if not _HUB_ID.match(space_id):
        raise SpaceError(f"push_to={space_id!r}: expected a Space id user/name")
    if not get_token():
        raise SpaceError(
            f"push_to={space_id}: no Hugging Face token; set HF_TOKEN or run `hf auth login` "
            "(or leave push_to unset to write the folder only)"
        )


def push(folder: Path, space_id: str, hardware: str, private: bool = False) -> str:
    """Create (or reuse) the Space ``space_id``, request ``hardware`` and upload ``folder``.

    The token comes from ``HF_TOKEN`` or ``hf auth login``; paid hardware needs billing set up.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    if hardware != "cpu-basic":
        api.request_space_hardware(space_id, hardware)  # type: ignore[arg-type]
    api.upload_folder(folder_path=str(folder), repo_id=space_id, repo_type="space")
    return f"https://huggingface.co/spaces/{space_id}"
