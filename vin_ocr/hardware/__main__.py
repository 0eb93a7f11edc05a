"""``python -m vin_ocr.hardware [model=X] [training=lora|qlora|full] [hardware.dtype=...]``.

Prints the machine report and, with a model, the preflight estimate. Exit code 1 when the run
does not fit (unless ``hardware.force=true``), 2 when a forced hardware choice is impossible.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.hardware import (
    Hardware,
    HardwareError,
    PreflightError,
    Probe,
    attn_support,
    detect,
    hub_parameter_count,
    load_model_cfg,
    pick_auto,
    preflight,
    resolve,
)


def machine_report(hw: Hardware, probe: Probe) -> str:
    build = f"CUDA {probe.torch_cuda_version} build" if probe.torch_cuda_version else "CPU build"
    lines = [
        "vin-ocr hardware report",
        f"  platform    {probe.platform} {probe.machine}, torch {probe.torch_version} ({build})",
        f"  CPU         {probe.cpu_count} cores; RAM {probe.ram_total_gb:.1f} GiB total, "
        f"{probe.ram_available_gb:.1f} GiB available",
    ]
    if not probe.devices:
        lines.append("  devices     none (no CUDA GPU, no MPS)")
    for d in probe.devices:
        cap = f", compute {d.capability[0]}.{d.capability[1]}" if d.capability else ""
        lines.append(
            f"  device {d.index}    {d.name}: {d.total_gb:.1f} GiB total, {d.free_gb:.1f} GiB free"
            f"{cap}, bf16 {'yes' if d.bf16 else 'no'}, fp16 {'yes' if d.fp16 else 'no'}"
        )
    lines += [
        f"  flash_attn  {probe.flash_attn.describe()}",
        f"  chosen      device {hw.device}, dtype {hw.dtype}, attention {hw.attn_implementation}",
    ]
    lines += [f"              - {why}" for why in hw.reasons]
    return "\n".join(lines)


def _hub_line(checkpoint: str) -> str:
    try:
        counts = hub_parameter_count(checkpoint)
    except Exception as exc:  # offline, gated, no safetensors ...
        return f"Hub safetensors metadata of {checkpoint}: not available ({type(exc).__name__})"
    per_dtype = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return f"Hub safetensors metadata of {checkpoint}: {sum(counts.values()):,} ({per_dtype})"


def run(cfg: DictConfig, probe: Probe | None = None) -> tuple[str, int]:
    """The whole command as a pure function: (report text, exit code)."""
    probe = probe if probe is not None else detect()
    model_cfg: Any = cfg.get("model")
    try:
        hw = resolve(cfg.hardware, probe)
        text = [machine_report(hw, probe)]
        if model_cfg is None:
            return text[0], 0
        if model_cfg.get("name") == "auto":
            name, est = pick_auto(cfg.training, hw)
            text.append(f"model=auto picks {name} (strongest family that fits)")
            model_cfg = load_model_cfg(name)
        hw = resolve(cfg.hardware, probe, attn_support(model_cfg))
        if cfg.get("check_hub"):
            text.append(_hub_line(str(model_cfg.get("checkpoint", ""))))
        est = preflight(model_cfg, cfg.training, hw)
        text.append(est.report())
        if not est.ok:
            text.append("(forced with hardware.force=true)")
        return "\n\n".join(text), 0
    except HardwareError as exc:
        return f"hardware error: {exc}", 2
    except PreflightError as exc:
        return "\n\n".join([*text, str(exc)]), 1


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="preflight", version_base="1.3")
def main(cfg: DictConfig) -> None:
    text, code = run(cfg)
    print(text)
    if cfg.get("verbose"):
        print(OmegaConf.to_yaml(cfg))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
