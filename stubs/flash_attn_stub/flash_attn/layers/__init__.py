"""Stub of ``flash_attn.layers``."""
