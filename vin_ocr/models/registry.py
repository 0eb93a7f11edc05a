"""Model families by name: ``model.family`` in ``configs/model/*.yaml`` picks one.

Adding a family touches its module (the class and its :class:`~vin_ocr.models.base.FamilyFacts`),
its YAML and one line here (or one :func:`register` call, as the tests' toy family does). A family
is loaded and checked once, on first use: the required methods, its facts, and which optional
capabilities (:data:`vin_ocr.models.base.CAPABILITIES`) it has; callers ask :func:`supports`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from vin_ocr.models.base import CAPABILITIES, REQUIRED, FamilyFacts, ModelFamily

FAMILIES: dict[str, str] = {
    "pp_ocr": "vin_ocr.models.pp_ocr:PPOCRFamily",
    "lfm2_vl": "vin_ocr.models.lfm2_vl:Lfm2Vl",
    "deepseek_ocr2": "vin_ocr.models.deepseek_ocr:DeepseekOcr2",
    "deepseek_ocr_v1": "vin_ocr.models.deepseek_ocr_v1:DeepseekOcrV1",
    "lfm3_vl": "vin_ocr.models.lfm3_vl:Lfm3Vl",
    "paddleocr_vl": "vin_ocr.models.paddleocr_vl:PaddleOcrVl",
}


@dataclass(frozen=True)
class Registered:
    """A family class checked at registration: its facts and its capabilities."""

    name: str
    cls: type
    facts: FamilyFacts
    capabilities: frozenset[type]


_LOADED: dict[str, Registered] = {}


def register(name: str, target: str) -> None:
    """Add (or replace) the family ``name`` implemented by ``"module:Class"``; checked on use."""
    FAMILIES[name] = target
    _LOADED.pop(name, None)


def unregister(name: str) -> None:
    """Remove the family ``name`` (a test's own family, once the test is done)."""
    FAMILIES.pop(name, None)
    _LOADED.pop(name, None)


def registered(name: str) -> Registered:
    """The checked registration of the family ``name`` (its module imported on first use)."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    module, _, cls_name = FAMILIES[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    _LOADED[name] = entry = _check(name, cls)
    return entry


def _check(name: str, cls: type) -> Registered:
    where = f"model family {name!r} ({cls.__module__}.{cls.__qualname__})"
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{where}: its class attribute name is {getattr(cls, 'name', None)!r}")
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"{where}: lacks the method(s) {', '.join(missing)}")
    facts = getattr(cls, "facts", None)
    if not isinstance(facts, FamilyFacts):
        raise TypeError(f"{where}: needs a class attribute facts = FamilyFacts(...)")
    capabilities = frozenset(p for p in CAPABILITIES if issubclass(cls, p))
    return Registered(name, cls, facts, capabilities)


def facts(name: str) -> FamilyFacts:
    """What the family ``name`` declares about itself."""
    return registered(name).facts


def supports(family: Any, capability: type) -> bool:
    """Whether ``family`` (an instance or a registered name) has ``capability``, one of the
    protocols of :mod:`vin_ocr.models.base`; decided once, at registration (an object the
    registry did not build, e.g. a test double, is checked against the protocol directly)."""
    if isinstance(family, str):
        return capability in registered(family).capabilities
    name = getattr(family, "name", None)
    if name in FAMILIES:
        entry = registered(name)
        if isinstance(family, entry.cls):
            return capability in entry.capabilities
    return isinstance(family, capability)


def get_family(name: str, cfg: Any = None) -> ModelFamily:
    """An instance of the family ``name`` (configured with the ``model`` config ``cfg``)."""
    family_cls = registered(name).cls
    takes_cfg = bool(inspect.signature(family_cls).parameters)
    return family_cls(cfg) if takes_cfg else family_cls()


def auto_order() -> tuple[str, ...]:
    """``model=auto`` candidates (model config names), strongest first, from every family."""
    ranked = [(s, c) for n in FAMILIES for c, s in facts(n).auto.items()]
    return tuple(c for _, c in sorted(ranked, key=lambda sc: -sc[0]))


def spec_of(model_cfg: Any) -> Any:
    """The preflight's :class:`~vin_ocr.models.spec.ModelSpec` of a ``model`` config."""
    from vin_ocr.models.spec import cfg_get

    family = str(cfg_get(model_cfg, "family", ""))
    if family not in FAMILIES:
        raise KeyError(
            f"the preflight has no entry for model family {family!r} "
            f"(model {cfg_get(model_cfg, 'name', '')!r}); known families: {', '.join(FAMILIES)}"
        )
    return facts(family).spec(model_cfg)
