"""Stub of ``flash_attn.ops.layer_norm``."""

from flash_attn._stub import unavailable

_M = "flash_attn.ops.layer_norm"
dropout_add_layer_norm = unavailable(f"{_M}.dropout_add_layer_norm")
layer_norm = unavailable(f"{_M}.layer_norm")
