"""Stub of ``flash_attn.layers.rotary``."""

from flash_attn._stub import unavailable, unavailable_class

_M = "flash_attn.layers.rotary"
apply_rotary_emb = unavailable(f"{_M}.apply_rotary_emb")
apply_rotary_emb_func = unavailable(f"{_M}.apply_rotary_emb_func")
apply_rotary_emb_kv_ = unavailable(f"{_M}.apply_rotary_emb_kv_")
apply_rotary_emb_qkv_ = unavailable(f"{_M}.apply_rotary_emb_qkv_")
RotaryEmbedding = unavailable_class(f"{_M}.RotaryEmbedding")
