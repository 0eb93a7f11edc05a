"""Bad input ends one way in every command: one ``error: ...`` line on stderr, exit code 1, no
traceback, nothing written. Real bugs keep their traceback.

::

    @hydra.main(...)
    def main(cfg):
        with exit_on_user_error(MergeError, HubError, out="out"):
            merge(cfg)

An output folder is checked before any expensive work with :func:`check_writable`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(ValueError):
    """An input the user can fix; the message says what is wrong, where, and what to do."""


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder`` (raises ``OSError`` when it cannot)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def check_writable(folder: str | Path, key: str, hint: str | None = None) -> None:
    """Raise :class:`UserError` unless ``folder`` (the value of the config key ``key``) can be
    written: it is a folder or can be created as one, and a file can be created in it (or in its
    nearest existing parent). Nothing is left behind. ``hint``: what to do (default: choose
    another ``key``)."""
    folder = Path(folder)
    hint = hint or f"choose another {key}"
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        what = "is a file" if parent == folder else f"cannot be created: {parent} is a file"
        raise UserError(f"{key}={folder} {what}, not a folder: {hint}")
    try:
        _probe(parent)
    except OSError as err:
        why = err.strerror or str(err)
        raise UserError(f"cannot write into {key} {folder} ({why} in {parent}): {hint}") from None


@contextmanager
def exit_on_user_error(*errors: type[BaseException], prefix: str = "", out: str | None = None
                       ) -> Iterator[None]:  # fmt: skip
    """Turn :class:`UserError` and ``errors`` raised inside into ``SystemExit("error: ...")``
    (Python prints the message alone and exits 1). ``out``: the config key of the command's
    output folder, named in the message when a write is refused (``PermissionError``)."""
    try:
        yield
    except PermissionError as err:
        if out is None and not isinstance(err, errors):
            raise
        where = err.filename or "the output folder"
        hint = f"; choose another {out}=" if out else ""
        raise SystemExit(f"error: {prefix}cannot write {where}: {err.strerror}{hint}") from None
    except (UserError, *errors) as err:  # type: ignore[misc]
        raise SystemExit(f"error: {prefix}{err}") from None
