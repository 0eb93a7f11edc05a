"""Printed scenes: the door-jamb certification sticker (with its Code 39 barcode) and the
registration document."""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw

from vin_ocr import vin as vinlib
from vin_ocr.data import fonts
from vin_ocr.data.synth.glyphs import _code39, _fit_size, _layout_lines, _Text
from vin_ocr.data.synth.looks import _BOLD_FONTS, _LABEL_FONTS, _painted, _Style, _vin_text
from vin_ocr.data.synth.raster import Arr, Box, _mask, _mix
from vin_ocr.data.synth.surfaces import _ink, _surface

_MAKERS = (
    "GENERAL MOTORS LLC", "FORD MOTOR COMPANY", "HONDA OF AMERICA MFG., INC.",
    "TOYOTA MOTOR MANUFACTURING", "VOLKSWAGEN AG", "BMW AG", "NISSAN MOTOR CO., LTD.",
    "HYUNDAI MOTOR COMPANY", "FCA US LLC", "TESLA, INC.", "RENAULT S.A.S.", "SKODA AUTO A.S.",
)  # fmt: skip


def _maker(vin: str, rng: random.Random) -> str:
    name = vinlib.manufacturer(vin)
    return name.upper() if name else rng.choice(_MAKERS)


def _kg(rng: random.Random, lo: int, hi: int) -> str:
    kg = rng.randrange(lo, hi, 5)
    return f"{kg} KG ({round(kg * 2.20462)} LB)"


def _scene_sticker(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    h = round(w * rng.uniform(0.55, 0.8))
    body = _painted(st.font, rng)
    canvas = _surface(body, h, w, nrng)
    mx, my = round(w * rng.uniform(0.02, 0.07)), round(h * rng.uniform(0.03, 0.08))
    lw, lh = w - 2 * mx, h - 2 * my
    label = _surface(st, lh, lw, nrng)
    lf = rng.choice(fonts.available(_LABEL_FONTS))
    bf = rng.choice(fonts.available(_BOLD_FONTS))
    prefix = rng.choice(["VIN: ", "VIN ", "V.I.N. ", ""])
    month = f"{rng.randint(1, 12):02d}/{rng.randint(0, 99):02d}"
    tyre = rng.choice(["P215/55R17", "225/65R17", "P245/70R17", "205/55R16"])
    # (text, font, size relative to the body text, layer)
    rows: list[tuple[str, str, float, str]] = [
        (f"MFD BY: {_maker(vin, rng)}", bf, 1.0, "ink"),
        (f"DATE: {month}    GVWR: {_kg(rng, 1600, 3200)}", lf, 1.0, "ink"),
        (f"GAWR FRT: {_kg(rng, 800, 1600)}  RR: {_kg(rng, 800, 1600)}", lf, 1.0, "ink"),
        (
            f"TIRES {tyre}  COLD TIRE PRESSURE {rng.randint(200, 260)} KPA "
            f"({rng.randint(30, 38)} PSI)",
            lf,
            0.85,
            "ink",
        ),
        ("THIS VEHICLE CONFORMS TO ALL APPLICABLE U.S. FEDERAL MOTOR", lf, 0.8, "ink"),
        ("VEHICLE SAFETY, BUMPER, AND THEFT PREVENTION STANDARDS IN", lf, 0.8, "ink"),
        ("EFFECT ON THE DATE OF MANUFACTURE SHOWN ABOVE.", lf, 0.8, "ink"),
        (vin, st.font, rng.uniform(1.15, 1.6), "vin"),
        (
            f"TYPE: {rng.choice(['PASS CAR', 'MPV', 'TRUCK'])}    "
            f"PAINT: {rng.choice(['NH731P', 'WA8555', '1G3', '040', 'PW7'])}",
            lf,
            1.0,
            "ink",
        ),
    ]
    pad = round(lw * rng.uniform(0.04, 0.07))
    # Body text size: fill the label's height, but let the widest line fit its width.
    track = st.params["tracking"] * len(vin)
    width_1 = 1.05 * max(
        (fonts.load(f, 100).getlength(prefix + t) / 100 + track) * rel
        if layer == "vin"
        else fonts.load(f, 100).getlength(t) / 100 * rel
        for t, f, rel, layer in rows
    )
    small = min(round(lh / rng.uniform(17, 22)), int((lw - 2.5 * pad) / width_1))
    small = max(7, small)
    lines: list[tuple[_Text, float, str]] = []
    vin_at, pre = -1, None
    for t, f, rel, layer in rows:
        if layer == "vin":
            vt = _vin_text(vin, st, _fit_size(st.font, vin, small * rel * 0.72))
            pre = _Text(prefix, bf, vt.size) if prefix else None
            vin_at = len(lines)
            lines.append((vt, pre.ifont.getlength(prefix) if pre else 0.0, "vin"))
        else:
            lines.append((_Text(t, f, max(6, round(small * rel))), 0, layer))
    gap = small * rng.uniform(0.35, 0.6)
    drawn = _layout_lines((lw, lh), lines, pad, pad, gap, rng)
    boxes = drawn["boxes"]
    assert isinstance(boxes, list)
    vin_box = boxes[vin_at]
    ink = _mask(drawn["ink"])
    if pre:
        pm = Image.new("L", (lw, lh), 0)
        pre.draw(pm, pad, vin_box[1], rng)
        ink = np.maximum(ink, _mask(pm))
    # Barcode of the VIN (sometimes with the import marker ``I``) under the text.
    # Real labels print it across most of their width (narrow module ~0.2-0.25 mm on a label
    # ~10 cm wide), with a quiet zone of at least 10 modules each side; a fractional module
    # width in pixels, as a camera sees it. Whether it stays readable is up to the augmentations.
    code = ("I" if rng.random() < 0.2 else "") + vin
    n_modules = 16 * (len(code) + 2) - 1  # python-barcode's Code 39: 16 per character, less a gap
    # At least 1.25 px per module (a clean render decodes), at most what fits the label.
    fit = (lw - 14) / (n_modules + 20)
    module = min(fit, max(1.25, (lw - 2 * pad) * rng.uniform(0.6, 0.95) / n_modules))
    bar_h = round(lh * rng.uniform(0.1, 0.16))
    bars = _code39(code, module, bar_h)
    by = max(b[3] for b in boxes) + round(gap * 1.5)
    bx = max(min(pad, lw - 5 - bars.shape[1] - math.ceil(10 * module)), math.ceil(10 * module) + 5)
    if by + bar_h < lh - 2 and bx + bars.shape[1] + 10 * module <= lw - 5:
        ink[by : by + bar_h, bx : bx + bars.shape[1]] = np.maximum(
            ink[by : by + bar_h, bx : bx + bars.shape[1]], bars
        )
    _ink(st, label, ink, small, nrng)
    _ink(st, label, _mask(drawn["vin"]), vt.size, nrng)
    border = Image.new("L", (lw, lh), 0)
    ImageDraw.Draw(border).rectangle((3, 3, lw - 4, lh - 4), outline=255, width=max(1, lh // 150))
    _ink(st, label, _mask(border), small, nrng)
    canvas[:, my : my + lh, mx : mx + lw] = label
    x0, y0, x1, y1 = vin_box
    return canvas, (x0 + mx, y0 + my, x1 + mx, y1 + my)


_DOC_FORMS = {
    "de": (
        "Zulassungsbescheinigung Teil I",
        ["E  Fahrzeug-Ident.-Nr.", "E  Fahrzeug-Identifizierungsnummer"],
        [("A  Amtliches Kennzeichen", "{plate}"), ("B  Datum der Erstzulassung", "{date}"),
         ("D.1  Marke", "{make}"), ("2.1  Code zu 2", "{num4}"), ("C.1.1  Name", "{name}"),
         ("F.1  Techn. zul. Gesamtmasse in kg", "{kg}"), ("P.1  Hubraum in cm3", "{cc}")],
    ),
    "uk": (
        "VEHICLE REGISTRATION CERTIFICATE",
        ["Chassis No.", "VIN/Chassis/Frame No.", "E  VIN/Chassis/Frame No."],
        [("Registration number", "{plate}"), ("Date of first registration", "{date}"),
         ("Make", "{make}"), ("Registered keeper", "{name}"), ("Cylinder capacity (cc)", "{cc}"),
         ("Revenue weight", "{kg}")],
    ),
    "us": (
        "CERTIFICATE OF TITLE",
        ["VIN", "VEHICLE IDENTIFICATION NUMBER", "VEHICLE ID NO."],
        [("TITLE NUMBER", "{num8}"), ("YEAR", "{year}"), ("MAKE", "{make}"),
         ("OWNER", "{name}"), ("ODOMETER", "{odo} MILES"), ("ISSUE DATE", "{date}")],
    ),
}  # fmt: skip

_NAMES = ("MUSTERMANN, ERIKA", "SMITH, JOHN A", "GARCIA, MARIA", "NOWAK, JAN", "ROSSI, LUCA",
          "DUPONT, CLAIRE", "JOHNSON, EMILY R", "SCHMIDT, PETER")  # fmt: skip


def _doc_value(tpl: str, vin: str, rng: random.Random) -> str:
    letters = "ABCDEFGHKLMNPRSTUVWXYZ"
    return tpl.format(
        plate=f"{''.join(rng.choices(letters, k=2))} {''.join(rng.choices(letters, k=2))} "
        f"{rng.randint(1, 9999)}",
        date=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1990, 2025)}",
        make=_maker(vin, rng).split(" ")[0],
        name=rng.choice(_NAMES),
        num4=f"{rng.randint(0, 9999):04d}",
        num8=f"{rng.randint(0, 99999999):08d}",
        kg=str(rng.randrange(1200, 3500, 5)),
        cc=str(rng.choice([998, 1395, 1598, 1968, 2487, 2996])),
        year=str(rng.randint(1990, 2025)),
        odo=f"{rng.randint(100, 250000):,}",
    )


def _scene_document(
    vin: str, st: _Style, rng: random.Random, nrng: np.random.Generator, w: int
) -> tuple[Arr, Box]:
    h = round(w * rng.uniform(0.6, 0.9))
    canvas = _surface(st, h, w, nrng)
    title, vin_labels, fields = _DOC_FORMS[rng.choice(list(_DOC_FORMS))]
    lf = rng.choice(fonts.available(_LABEL_FONTS))
    bf = rng.choice(fonts.available(_BOLD_FONTS))
    vf = st.font
    chosen = rng.sample(fields, k=min(len(fields), rng.randint(4, 6)))
    at = rng.randint(1, len(chosen))
    entries = [(lab, _doc_value(v, vin, rng)) for lab, v in chosen]
    entries.insert(at, (rng.choice(vin_labels), vin))
    # Font sizes such that the form fills most of the page's height.
    small = max(8, min(round(h / 20), round(h * rng.uniform(0.6, 0.85) / (3 + 2.9 * len(entries)))))
    value = round(small * rng.uniform(1.2, 1.5))
    pad = round(w * rng.uniform(0.05, 0.08))
    head = _Text(title, bf, round(small * 1.5))
    while head.extent()[2] > w - 2 * pad and head.size > 8:
        head = _Text(title, bf, int(head.size * 0.9))
    lines: list[tuple[_Text, float, str]] = [(head, 0, "form")]
    vin_pos = -1
    for lab, val in entries:
        lines.append((_Text(lab, lf, small), 0, "form"))
        if val == vin:
            vin_pos = len(lines)
            lines.append((_vin_text(vin, st, _fit_size(vf, vin, value * 0.72)), small, "vin"))
        else:
            lines.append((_Text(val, vf, _fit_size(vf, "0A", value * 0.72)), small, "ink"))
    gap = small * rng.uniform(0.3, 0.6)
    drawn = _layout_lines((w, h), lines, pad, pad, gap, rng)
    boxes = drawn["boxes"]
    assert isinstance(boxes, list)
    rules = Image.new("L", (w, h), 0)
    rd = ImageDraw.Draw(rules)
    for i in range(1, len(lines), 2):  # a rule above each field label
        y = boxes[i][1] - round(gap / 2) - 1
        rd.line((pad - 4, y, w - pad, y), fill=255, width=1)
    _mix(canvas, _mask(rules) * 0.6 + _mask(drawn["form"]), np.asarray(st.params["form_ink"]))
    if "ink" in drawn:
        _ink(st, canvas, _mask(drawn["ink"]), value, nrng)
    _ink(st, canvas, _mask(drawn["vin"]), value, nrng)
    return canvas, boxes[vin_pos]
