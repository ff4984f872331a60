"""Schema helpers shared by the manifest and by every modality's options: a strict base model,
and the translation of pydantic's errors into our one-line `ManifestError`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mmauto.errors import ManifestError, did_you_mean


class Strict(BaseModel):
    """Unknown keys are errors; values are not silently coerced across kinds."""

    model_config = ConfigDict(extra="forbid", frozen=False, protected_namespaces=())


def key_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _short(value: Any) -> str:
    import reprlib

    if isinstance(value, dict):
        return "a mapping"
    # Bounded: a huge value (a long list, a string of megabytes) is never printed in full.
    if isinstance(value, str):
        text = repr(value[:61])
    else:
        short = reprlib.Repr()
        short.maxlevel, short.maxlist, short.maxtuple, short.maxstring, short.maxother = 2, 6, 6, 64, 64
        text = short.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NO_DATA = object()


def _visible(loc, data=_NO_DATA) -> list:
    # pydantic inserts union-member and function names (e.g. "str", "list[str]") into the
    # location; the user never wrote those. With the validated data at hand, a part that is a
    # key (or index) the user wrote is kept even when it looks like one ("n[ame").
    out, cur = [], data
    for p in loc:
        if isinstance(cur, dict) and _has_key(cur, p) or isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            out.append(p)
            cur = cur[p]
        elif not (isinstance(p, str) and _is_tag(p)):
            out.append(p)  # a key the user did not write (a missing one), or no data to tell
            cur = _NO_DATA
    return out


def _is_tag(part: str) -> bool:
    return bool(re.search(r"[\[\]()]|^(str|int|float|bool)$", part))


def _has_key(mapping: dict, key) -> bool:
    try:
        return key in mapping
    except TypeError:
        return False


def explain(err: dict, model: type[BaseModel] | None, prefix: tuple = (), data=_NO_DATA) -> tuple[str, str]:
    """(key path, message) for one pydantic error; `data` is what was validated."""
    loc = _visible(err.get("loc", ()), data)
    if not loc and err.get("type") == "extra_forbidden":
        loc = [err.get("loc", ("?",))[-1]]
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        parent, bad = loc[:-1], loc[-1]
        valid = _fields_at(model, parent)
        hint = did_you_mean(bad, valid)
        what = f"unknown key '{bad}'{hint}"
        if valid:
            what += f" (valid keys: {', '.join(valid)})"
        return key_path(prefix + tuple(parent)), what
    path = key_path(prefix + tuple(loc))
    if kind == "missing":
        return path, "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return path, f"unknown value {_short(value)}{did_you_mean(value, choices)} (expected {expected})"
    if kind in ("value_error", "assertion_error"):
        msg = str(err.get("ctx", {}).get("error", err.get("msg", "")))
        return path, msg
    msg = err.get("msg", "invalid value")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return path, f"{msg}, got {_short(value)}"


def _fields_at(model, parent) -> list[str]:
    """The valid keys of the sub-model at `parent` (best effort; [] when unknown)."""
    try:
        cur = model
        for p in parent:
            if cur is None:
                return []
            if isinstance(p, int):
                continue
            field = cur.model_fields.get(p)
            if field is None:
                return []
            cur = _model_of(field.annotation)
        return sorted(cur.model_fields) if cur is not None else []
    except Exception:
        return []


def _model_of(annotation):
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        m = _model_of(arg)
        if m is not None:
            return m
    return None


def validate_model(model: type[BaseModel], data: Any, where: str, prefix: tuple = ()):
    """`model.model_validate(data)`, raising the first error as a ManifestError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A value error from our own validators says more than the union noise around it, and
        # of a union's errors the deepest one (`target.1.task`) names what is wrong.
        errors.sort(key=lambda e: (e.get("type") not in ("value_error", "extra_forbidden", "missing"), -len(e.get("loc", ()))))
        misspelt = _misspelt_required(errors, data)
        if misspelt:
            extra, name = misspelt
            key, what = explain(extra, model, prefix, data)
            what = what.replace(f"did you mean '{name}'?", f"did you mean '{name}' (required, missing)?", 1)
            raise ManifestError(where, key, what) from None
        key, what = explain(errors[0], model, prefix, data)
        raise ManifestError(where, key, what) from None


def _misspelt_required(errors, data=_NO_DATA):
    """(the unknown-key error, the required key's name) when a missing required key was
    written under a close misspelling (`taget:` for `target:`), else None."""
    for missing in (e for e in errors if e.get("type") == "missing"):
        loc = _visible(missing.get("loc", ()), data)
        if not loc or not isinstance(loc[-1], str):
            continue
        for extra in (e for e in errors if e.get("type") == "extra_forbidden"):
            eloc = _visible(extra.get("loc", ()), data)
            if eloc and eloc[:-1] == loc[:-1] and did_you_mean(eloc[-1], [loc[-1]]):
                return extra, loc[-1]
    return None
