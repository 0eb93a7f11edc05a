"""Turn a :class:`Probe` and the ``hardware`` config into one frozen :class:`Hardware` object.

Every choice can be forced from config; a forced choice the machine cannot honour raises
:class:`HardwareError` with the reason, it is never swapped for another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vin_ocr.hardware.detect import DeviceInfo, Probe, detect
from vin_ocr.models.spec import AttnSupport

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTN = ("auto", "flash_attention_2", "sdpa", "eager")

STUB_FIX = (
    "install the real one on a CUDA machine (`pip uninstall flash-attn-stub && "
    "pip install flash-attn --no-build-isolation`, Ampere or newer GPU), "
    "or use hardware.attn_implementation=sdpa"
)


class HardwareError(RuntimeError):
    """A forced hardware choice this machine cannot honour (raised at start, with the reason)."""


@dataclass
class HardwareConfig:
    """Schema of the ``hardware`` config group (``configs/hardware/*.yaml``)."""

    device: str = "auto"  # auto | cuda | mps | cpu
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    attn_implementation: str = "auto"  # auto | flash_attention_2 | sdpa | eager
    force: bool = False  # start training even when the preflight says it does not fit


@dataclass(frozen=True)
class Hardware:
    """The machine and the choices a run uses; training and evaluation receive this object."""

    device: str  # cuda | mps | cpu
    device_count: int
    dtype: str  # bf16 | fp16 | fp32
    attn_implementation: str  # flash_attention_2 | sdpa | eager
    devices: tuple[DeviceInfo, ...]
    ram_total_gb: float
    ram_available_gb: float
    cpu_count: int
    platform: str
    torch_version: str
    flash_attn: str
    force: bool
    reasons: tuple[str, ...]  # why each choice was made, one line each

    @property
    def torch_dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.dtype]

    @property
    def memory_gb(self) -> float:
        """Memory a run can use now: free memory of device 0, or available RAM on CPU."""
        if self.device in ("cuda", "mps") and self.devices:
            return self.devices[0].free_gb
        return self.ram_available_gb

    @property
    def memory_total_gb(self) -> float:
        if self.device in ("cuda", "mps") and self.devices:
            return self.devices[0].total_gb
        return self.ram_total_gb

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = [asdict(d) for d in self.devices]
        data["reasons"] = list(self.reasons)
        return data

    def summary(self) -> str:
        """A few Markdown lines for logs and the model card."""
        if self.device == "cpu":
            where = f"CPU ({self.cpu_count} cores, {self.ram_total_gb:.0f} GiB RAM)"
        else:
            names = ", ".join(f"{d.name} ({d.total_gb:.0f} GiB)" for d in self.devices)
            where = f"{self.device.upper()} x{self.device_count}: {names}"
        return (
            f"- Hardware: {where}\n- dtype: {self.dtype}; attention: {self.attn_implementation}\n"
            f"- torch {self.torch_version} on {self.platform}; flash_attn: {self.flash_attn}"
        )


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    value = str(value).lower()
    if value not in allowed:
        raise HardwareError(f"hardware.{key}={value!r} is not one of {', '.join(allowed)}")
    return value


def _resolve_device(asked: str, probe: Probe) -> tuple[str, str]:
    if asked == "auto":
        if probe.cuda_available:
            return "cuda", "device cuda: a CUDA GPU is available (CUDA > MPS > CPU)"
        if probe.mps_available:
            return "mps", "device mps: Apple GPU available, no CUDA (CUDA > MPS > CPU)"
        return "cpu", "device cpu: no CUDA or MPS device found"
    if asked == "cuda" and not probe.cuda_available:
        why = (
            f"torch {probe.torch_version} is built without CUDA"
            if probe.torch_cuda_version is None
            else f"torch {probe.torch_version} is built for CUDA {probe.torch_cuda_version}, "
            "but no GPU or driver is visible"
        )
        raise HardwareError(
            f"hardware.device=cuda was asked for, but torch.cuda.is_available() is False ({why})"
        )
    if asked == "mps" and not probe.mps_available:
        why = (
            "this is not macOS on Apple silicon"
            if probe.platform != "darwin"
            else "torch is built without MPS or macOS is older than 12.3"
            if not probe.mps_built
            else "the MPS device is not usable (macOS older than 12.3 or no Metal GPU)"
        )
        raise HardwareError(
            f"hardware.device=mps was asked for, but torch.backends.mps.is_available() is False "
            f"({why})"
        )
    return asked, f"device {asked}: forced by hardware.device"


def _dtype_support(device: str, probe: Probe) -> dict[str, bool]:
    if device == "cpu":
        return {"bf16": probe.cpu_bf16, "fp16": True, "fp32": True}
    first = probe.devices[0] if probe.devices else DeviceInfo(0, "?", 0.0, 0.0)
    bf16 = all(d.bf16 for d in probe.devices) if probe.devices else first.bf16
    fp16 = all(d.fp16 for d in probe.devices) if probe.devices else first.fp16
    return {"bf16": bf16, "fp16": fp16, "fp32": True}


def _resolve_dtype(asked: str, device: str, probe: Probe) -> tuple[str, str]:
    support = _dtype_support(device, probe)
    if asked == "auto":
        if device == "cpu":
            # bf16 on CPUs without AMX is slower than fp32 and its rounding hurts small-batch
            # training; fp32 is the safe default there (force hardware.dtype=bf16 to try it).
            # With AMX, LoRA in bf16 (frozen bf16 base, fp32 adapters, autocast) ran 1.4x the
            # fp32 loop's samples/s in 2/3 of its memory (docs/training.md): said, not chosen.
            hint = " (this CPU has AMX: hardware.dtype=bf16 runs LoRA faster in 2/3 of the memory)"
            return "fp32", "dtype fp32: CPU training runs in fp32 (bf16 only when forced)" + (
                hint if probe.cpu_amx else ""
            )
        for name in ("bf16", "fp16"):
            if support[name]:
                return name, f"dtype {name}: best the {device} device supports (bf16 > fp16 > fp32)"
        return "fp32", f"dtype fp32: the {device} device supports neither bf16 nor fp16"
    if not support[asked]:
        gpu = probe.devices[0] if probe.devices else None
        what = (
            f"GPU {gpu.index} ({gpu.name}, compute capability "
            f"{'.'.join(map(str, gpu.capability or ()))}) has no {asked} support"
            + (" (bf16 needs compute capability 8.0+, Ampere or newer)" if asked == "bf16" else "")
            if gpu is not None and device == "cuda"
            else f"the {device} device has no {asked} support"
            + (" (bf16 on MPS needs macOS 14+)" if device == "mps" and asked == "bf16" else "")
        )
        alternative = "fp16" if asked == "bf16" and support["fp16"] else "fp32"
        raise HardwareError(
            f"hardware.dtype={asked} was asked for, but {what}; use hardware.dtype={alternative}"
        )
    return asked, f"dtype {asked}: forced by hardware.dtype"


def _flash_problem(device: str, dtype: str, probe: Probe, model: AttnSupport) -> str | None:
    """Why flash_attention_2 cannot run here, or None when it can."""
    fa = probe.flash_attn
    if not model.flash_attention_2:
        return "the model does not implement flash_attention_2"
    if fa.status == "stub":
        return (
            f"the installed flash_attn is vin-ocr's stub (flash-attn-stub {fa.version}), which "
            f"only lets remote model code import; {STUB_FIX}"
        )
    if fa.status == "absent":
        return "flash_attn is not installed (`pip install flash-attn --no-build-isolation`)"
    if fa.status == "broken":
        return f"flash_attn is installed but does not import ({fa.detail})"
    if fa.status == "too_old":
        return f"flash_attn {fa.version} is older than 2.3.3, the oldest transformers accepts"
    if device != "cuda":
        return f"flash_attention_2 runs on CUDA only, and this run uses {device}"
    if dtype not in ("bf16", "fp16"):
        return f"flash_attention_2 needs fp16 or bf16, and the dtype is {dtype}"
    old = [d for d in probe.devices if d.capability is not None and d.capability < (8, 0)]
    if old:
        cap = ".".join(map(str, old[0].capability or ()))
        return f"flash-attn 2 needs an Ampere or newer GPU (8.0+); {old[0].name} is {cap}"
    return None


def _resolve_attn(
    asked: str, device: str, dtype: str, probe: Probe, model: AttnSupport
) -> tuple[str, str]:
    if asked == "auto":
        problem = _flash_problem(device, dtype, probe, model)
        if problem is None:
            return "flash_attention_2", "attention flash_attention_2: real flash-attn on CUDA"
        if model.sdpa:
            return "sdpa", f"attention sdpa: not flash_attention_2 because {problem}"
        return "eager", "attention eager: the model supports neither flash-attn here nor sdpa"
    if asked == "flash_attention_2":
        problem = _flash_problem(device, dtype, probe, model)
        if problem is not None:
            raise HardwareError(
                f"hardware.attn_implementation=flash_attention_2 was asked for, but {problem}"
            )
    if asked == "sdpa" and not model.sdpa:
        raise HardwareError(
            "hardware.attn_implementation=sdpa was asked for, but the model does not implement "
            "sdpa; use hardware.attn_implementation=eager"
        )
    return asked, f"attention {asked}: forced by hardware.attn_implementation"


def resolve(
    cfg: Any = None, probe: Probe | None = None, model_supports: AttnSupport | None = None
) -> Hardware:
    """Choose device, dtype and attention for ``cfg`` (a ``hardware`` config) on ``probe``.

    ``probe`` defaults to :func:`detect` of this machine; ``model_supports`` to a model that has
    every kernel (pass :func:`vin_ocr.hardware.attn_support` of the model being run).
    """
    probe = probe if probe is not None else detect()
    model_supports = model_supports or AttnSupport()
    device, why_device = _resolve_device(
        _check_choice("device", _get(cfg, "device", "auto"), DEVICES), probe
    )
    dtype, why_dtype = _resolve_dtype(
        _check_choice("dtype", _get(cfg, "dtype", "auto"), DTYPES), device, probe
    )
    attn, why_attn = _resolve_attn(
        _check_choice("attn_implementation", _get(cfg, "attn_implementation", "auto"), ATTN),
        device,
        dtype,
        probe,
        model_supports,
    )
    devices = probe.devices if device in ("cuda", "mps") else ()
    return Hardware(
        device=device,
        device_count=len(devices) if devices else 1,
        dtype=dtype,
        attn_implementation=attn,
        devices=devices,
        ram_total_gb=probe.ram_total_gb,
        ram_available_gb=probe.ram_available_gb,
        cpu_count=probe.cpu_count,
        platform=probe.platform,
        torch_version=probe.torch_version,
        flash_attn=probe.flash_attn.describe(),
        force=bool(_get(cfg, "force", False)),
        reasons=(why_device, why_dtype, why_attn),
    )
