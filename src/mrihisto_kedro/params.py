"""Typed parameter parsing: Kedro parameter dictionaries -> frozen dataclasses (no Kedro imports).

Nodes call :func:`parse_params` on entry so that a wrong key, a wrong type or an unknown option
fails before any work starts, with an error that names the parameter key.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class ParameterError(ValueError):
    """A parameter has an unknown key, a missing value, a wrong type or an invalid value."""


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ParameterError as exc:
                errors.append(str(exc))
        raise ParameterError("; ".join(errors))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ParameterError(f"parameter '{key}' must be a mapping, got {value!r}")
        return parse_params(hint, value, key)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            options = ", ".join(str(m.value) for m in hint)
            raise ParameterError(
                f"parameter '{key}' = {value!r} is not one of: {options}"
            ) from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ParameterError(f"parameter '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"parameter '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"parameter '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParameterError(f"parameter '{key}' must be a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ParameterError(f"parameter '{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ParameterError(
                    f"parameter '{key}' must have {len(args)} items, got {len(value)}"
                )
            return tuple(
                _convert(v, a, f"{key}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ParameterError(f"parameter '{key}' must be a mapping, got {value!r}")
        return dict(value)
    return value


def parse_params(cls: type[T], values: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a parameter mapping, validating keys and types.

    Args:
        cls: a dataclass type; field types may be bool/int/float/str, enums, nested dataclasses,
            ``X | None``, tuples and lists of those. Defaults of the dataclass apply to absent keys.
        values: the mapping from ``parameters*.yml`` (``None`` means all defaults).
        prefix: the dotted key of ``values`` in the parameters, used in error messages.

    Returns:
        An instance of ``cls``; its ``__post_init__`` may validate ranges further.

    Raises:
        ParameterError: unknown key, missing required key, wrong type or invalid option, with the
            full dotted key in the message.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    where = f"'{prefix}'" if prefix else cls.__name__
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(repr(u) for u in unknown)} in {where}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParameterError(f"missing required parameter '{key}'")
    try:
        return cls(**kwargs)
    except ParameterError:
        raise
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"invalid parameters in {where}: {exc}") from exc


def check_ranges(
    obj: object,
    owner: str,
    *,
    ints: Mapping[str, tuple[int, int | None]] | None = None,
    floats: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    """Check attributes of ``obj`` against closed ranges; ``None`` as an upper bound: no limit.

    For ``__post_init__`` of parameter dataclasses. Errors read ``"<owner>.<name> must be ..."``.

    Raises:
        ValueError: a value of the wrong type (booleans are not numbers) or out of its range.
    """
    for name, (lo, hi) in (ints or {}).items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{owner}.{name} must be {bound}, got {value}")
    for name, (flo, fhi) in (floats or {}).items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
        if not flo <= float(value) <= fhi:
            raise ValueError(f"{owner}.{name} must be in [{flo}, {fhi}], got {value}")


def check_int(name: str, value: object, minimum: int) -> None:
    """Refuse anything but an integer ``>= minimum`` (booleans are not integers).

    Raises:
        ValueError: ``"<name> must be an integer >= <minimum>, got <value>"``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value: object, low: float, high: float | None = None) -> None:
    """Refuse anything but a finite number in ``[low, high)`` (``[low, inf)`` without
    ``high``; booleans, NaN and infinities are refused).

    Raises:
        ValueError: ``"<name> must be a number in [<low>, <high>), got <value>"``.
    """
    ok = False
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        number = float(value)
        ok = math.isfinite(number) and number >= low and (high is None or number < high)
    if not ok:
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")


class ConfigDict:
    """``to_dict`` / ``from_dict`` for the frozen config dataclasses of the networks (model and
    DCGAN configs): what checkpoints store and MLflow logs, and back."""

    __dataclass_fields__: typing.ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` with enums as their string values (logging, checkpoints)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> typing.Self:
        """Build the config from :meth:`to_dict` output or a parameters mapping.

        Raises:
            ValueError: unknown keys (named) or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {unknown}")
        return cls(**dict(values))
