"""Hardware detection, attention/dtype choice, and the training-memory preflight.

``python -m vin_ocr.hardware`` prints the machine report; with ``model=X training=lora`` it also
says whether that model trains here. Training calls :func:`resolve` then :func:`preflight`.
"""

from vin_ocr.hardware.detect import (
    DeviceInfo,
    FlashAttnInfo,
    Probe,
    configure_platform,
    detect,
    detect_flash_attn,
)

configure_platform()  # before anything imports torch (macOS duplicate-OpenMP abort)

from vin_ocr.hardware.catalog import (  # noqa: E402
    ModelSpec,
    Tower,
    hub_parameter_count,
    model_spec,
    spec_from_module,
)
from vin_ocr.hardware.estimate import (  # noqa: E402
    Estimate,
    PreflightError,
    TrainingSpec,
    activation_bytes,
    auto_order,
    estimate,
    load_model_cfg,
    pick_auto,
    preflight,
)
from vin_ocr.hardware.resolve import (  # noqa: E402
    AttnSupport,
    Hardware,
    HardwareConfig,
    HardwareError,
    resolve,
)


def attn_support(model_cfg: object) -> AttnSupport:
    """Which attention kernels the model of a ``model`` config implements (``auto``: any)."""
    from vin_ocr.hardware.catalog import _cfg_get

    if _cfg_get(model_cfg, "name") == "auto":
        return AttnSupport()
    return model_spec(model_cfg).attn


__all__ = [
    "AttnSupport",
    "DeviceInfo",
    "Estimate",
    "FlashAttnInfo",
    "Hardware",
    "HardwareConfig",
    "HardwareError",
    "ModelSpec",
    "PreflightError",
    "Probe",
    "Tower",
    "TrainingSpec",
    "activation_bytes",
    "attn_support",
    "auto_order",
    "configure_platform",
    "detect",
    "detect_flash_attn",
    "estimate",
    "hub_parameter_count",
    "load_model_cfg",
    "model_spec",
    "pick_auto",
    "preflight",
    "resolve",
    "spec_from_module",
]
