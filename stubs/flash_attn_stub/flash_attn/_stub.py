"""The error every stub callable raises, and the factory that makes those callables."""

from __future__ import annotations

from typing import Any, NoReturn

HELP = (
    "flash_attn here is vin-ocr's stub (distribution flash-attn-stub), installed so that remote "
    "model code can import; it has no kernels. Load the model with attn_implementation='sdpa' "
    "(or 'eager'), or on a CUDA machine with an Ampere or newer GPU run "
    "`pip uninstall flash-attn-stub && pip install flash-attn --no-build-isolation`."
)


class FlashAttnStubError(RuntimeError):
    """Raised by every function and class of the stub ``flash_attn``."""


def unavailable(qualname: str) -> Any:
    """A function named ``qualname`` that raises :class:`FlashAttnStubError` when called."""

    def stub(*args: Any, **kwargs: Any) -> NoReturn:
        raise FlashAttnStubError(f"{qualname}() was called, but {HELP}")

    stub.__name__ = qualname.rsplit(".", 1)[-1]
    stub.__qualname__ = stub.__name__
    stub.__doc__ = f"Stub of ``{qualname}``: raises FlashAttnStubError."
    return stub


def unavailable_class(qualname: str) -> type:
    """A class named ``qualname`` whose construction raises :class:`FlashAttnStubError`."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise FlashAttnStubError(f"{qualname}() was instantiated, but {HELP}")

    name = qualname.rsplit(".", 1)[-1]
    return type(name, (), {"__init__": __init__, "__doc__": f"Stub of ``{qualname}``."})
