"""Stub of ``flash_attn.ops``."""
