"""Stub of ``flash_attn.ops.rms_norm``."""

from flash_attn._stub import unavailable, unavailable_class

_M = "flash_attn.ops.rms_norm"
rms_norm = unavailable(f"{_M}.rms_norm")
RMSNorm = unavailable_class(f"{_M}.RMSNorm")
