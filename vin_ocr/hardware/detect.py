"""Raw facts about this machine: platform, accelerators, memory, and which ``flash_attn`` is here.

Nothing here decides anything; :mod:`vin_ocr.hardware.resolve` turns a :class:`Probe` into the
choices a run uses. Tests build :class:`Probe` objects by hand to cover CUDA, MPS and CPU machines.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 1024**3

#: The oldest flash-attn 2 that transformers accepts (``is_flash_attn_2_available``).
MIN_FLASH_ATTN = (2, 3, 3)


def configure_platform() -> None:
    """Process-wide settings that must be in place before torch loads its OpenMP runtime.

    On macOS, torch, numpy (Accelerate/OpenBLAS) and other wheels each ship an OpenMP runtime; a
    second copy aborts the process with ``OMP: Error #15: Initializing libiomp5.dylib, but found
    libomp.dylib already initialized``. ``KMP_DUPLICATE_LIB_OK=TRUE`` lets it continue. A value the
    user already set is kept.
    """
    if sys.platform == "darwin":
        os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")


@dataclass(frozen=True)
class DeviceInfo:
    """One accelerator (a CUDA GPU, or the unified memory an MPS device draws from)."""

    index: int
    name: str
    total_gb: float
    free_gb: float
    capability: tuple[int, int] | None = None  # CUDA compute capability; None for MPS
    bf16: bool = False
    fp16: bool = True


@dataclass(frozen=True)
class FlashAttnInfo:
    """What ``import flash_attn`` gives here.

    ``status`` is ``absent`` (not installed), ``stub`` (vin-ocr's ``flash-attn-stub``),
    ``real`` (a flash-attn 2 that imports), ``too_old`` (older than 2.3.3) or ``broken`` (installed
    but the import fails, usually a CUDA/torch ABI mismatch; ``detail`` has the error).
    """

    status: str = "absent"
    version: str | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.status == "absent":
            return "not installed"
        if self.status == "stub":
            return f"vin-ocr stub {self.version} (imports only; never used for attention)"
        if self.status == "real":
            return f"flash-attn {self.version}"
        if self.status == "too_old":
            return f"flash-attn {self.version} (older than 2.3.3, which transformers needs)"
        return f"installed but broken: {self.detail}"


@dataclass(frozen=True)
class Probe:
    """Everything :func:`resolve` needs to know about the machine, gathered by :func:`detect`."""

    platform: str  # sys.platform: linux, darwin, win32
    machine: str  # x86_64, arm64, ...
    torch_version: str
    torch_cuda_version: str | None  # torch.version.cuda; None for a CPU-only build
    cuda_available: bool
    mps_built: bool
    mps_available: bool
    devices: tuple[DeviceInfo, ...]  # CUDA GPUs, or one MPS device, or empty
    ram_total_gb: float
    ram_available_gb: float
    cpu_count: int
    cpu_bf16: bool = True  # torch runs bf16 on any x86-64/arm64 CPU (fast only with AMX/SVE)
    cpu_amx: bool = False  # the CPU has AMX bf16 matrix units (Linux /proc/cpuinfo flag amx_bf16)
    flash_attn: FlashAttnInfo = field(default_factory=FlashAttnInfo)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def detect_flash_attn() -> FlashAttnInfo:
    """Import ``flash_attn`` (if installed) and say whether it is real, the stub, or broken."""
    if importlib.util.find_spec("flash_attn") is None:
        return FlashAttnInfo("absent")
    try:
        module = importlib.import_module("flash_attn")
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError ...
        return FlashAttnInfo("broken", None, f"{type(exc).__name__}: {exc}")
    version = str(getattr(module, "__version__", "unknown"))
    if getattr(module, "__vin_ocr_stub__", False):
        return FlashAttnInfo("stub", version)
    if _version_tuple(version) < MIN_FLASH_ATTN:
        return FlashAttnInfo("too_old", version)
    return FlashAttnInfo("real", version)


def _ram() -> tuple[float, float]:
    import psutil

    vm = psutil.virtual_memory()
    return vm.total / GIB, vm.available / GIB


def detect() -> Probe:
    """Look at this machine (imports torch; does not allocate device memory beyond a context)."""
    configure_platform()
    import torch

    devices: list[DeviceInfo] = []
    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps_built = bool(mps_backend and mps_backend.is_built())
    mps = bool(mps_backend and mps_backend.is_available())
    ram_total, ram_available = _ram()
    if cuda:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            capability = (props.major, props.minor)
            devices.append(
                DeviceInfo(
                    index=index,
                    name=props.name,
                    total_gb=total / GIB,
                    free_gb=free / GIB,
                    capability=capability,
                    bf16=capability >= (8, 0),
                    fp16=capability >= (5, 3),
                )
            )
    elif mps:
        # MPS draws from unified memory; torch's recommended ceiling is the usable part.
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        usable = float(recommended() / GIB if recommended else ram_total * 0.75)
        macos14 = bool(getattr(mps_backend, "is_macos_or_newer", lambda *_: False)(14, 0))
        devices.append(
            DeviceInfo(
                index=0,
                name=f"Apple {platform.machine()} (MPS)",
                total_gb=usable,
                free_gb=min(usable, ram_available),
                capability=None,
                bf16=macos14,
                fp16=True,
            )
        )
    return Probe(
        platform=sys.platform,
        machine=platform.machine(),
        torch_version=torch.__version__,
        torch_cuda_version=torch.version.cuda,
        cuda_available=cuda,
        mps_built=mps_built,
        mps_available=mps,
        devices=tuple(devices),
        ram_total_gb=ram_total,
        ram_available_gb=ram_available,
        cpu_count=os.cpu_count() or 1,
        cpu_amx=_cpu_amx(),
        flash_attn=detect_flash_attn(),
    )


def _cpu_amx() -> bool:
    """Whether the CPU has AMX bf16 units (Linux; elsewhere False)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(ln.startswith("flags") and " amx_bf16" in ln for ln in info)
    except OSError:
        return False
