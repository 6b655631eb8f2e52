"""Typed parameters: one mechanism for every parameter and config dataclass (no Kedro imports).

A parameter dataclass subclasses :class:`Params` and declares everything about a field on the
field itself: its type (``bool``, ``int``, ``float``, ``str``, an enum, a nested parameter
dataclass, ``X | None``, tuples and lists of those) and, for numbers, its range with
:class:`Range` in ``Annotated``::

    @dataclass(frozen=True)
    class TilingParams(Params):
        tile_size: Annotated[int, Range(ge=16)] = 256
        min_tissue_fraction: Annotated[float, Range(ge=0.0, le=1.0)] = 0.5
        plane: Plane = Plane.AXIAL  # "axial" in YAML: coerced to the enum once, here

``Params.__post_init__`` coerces each field to its declared type (option strings to their enum,
lists to tuples, mappings to nested dataclasses) and checks the declared ranges, then calls
:meth:`Params.validate` for the rules that relate several fields. It runs however the object is
built: by :func:`parse_params` from a Kedro parameter mapping (unknown and missing keys are
refused first), by :meth:`Params.from_dict` from a checkpoint, or directly in code. Every error
is a :class:`ParameterError` that carries the key of the bad value; :func:`parse_params` prefixes
the dotted key of the mapping, so a typo reads ``'tiles_256.training.model.lambda_L1' must be
>= 0, got -1.0``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
E = TypeVar("E", bound=enum.Enum)

__all__ = [
    "ParameterError",
    "Params",
    "Range",
    "checked",
    "default_copies",
    "fail",
    "parse_option",
    "parse_params",
]


class ParameterError(ValueError):
    """A parameter has an unknown key, a missing value, a wrong type or an invalid value.

    Attributes:
        key: dotted key of the bad value relative to where it was raised (``None``: the whole
            group); :func:`parse_params` prefixes the key of the group it parses.
        reason: what is wrong, without the key (``"must be >= 1, got 0"``).
    """

    def __init__(self, reason: str, key: str | None = None) -> None:
        self.key = key or None
        self.reason = reason
        super().__init__(f"parameter '{key}' {reason}" if key else reason)

    def under(self, prefix: str) -> ParameterError:
        """The same error with its key below ``prefix`` (``prefix`` alone if it had none)."""
        if not prefix:
            return self
        return ParameterError(self.reason, f"{prefix}.{self.key}" if self.key else prefix)


def fail(key: str, reason: str) -> typing.NoReturn:
    """Raise :class:`ParameterError` for field ``key`` (in :meth:`Params.validate`); ``""``: a
    rule of the whole group (the error then names the group's dotted key)."""
    raise ParameterError(reason, key)


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, declared as ``Annotated[float, Range(gt=0.0, le=1.0)]``.

    ``ge``/``gt`` are the lower bound (inclusive/exclusive), ``le``/``lt`` the upper one;
    ``None``: unbounded. NaN and infinities are refused unless ``finite=False``.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def describe(self) -> str:
        """``">= 1"``, ``"in (0, 1]"``, ``"a finite number"``."""
        lower = [f"[{_num(self.ge)}", f">= {_num(self.ge)}"] if self.ge is not None else None
        if self.gt is not None:
            lower = [f"({_num(self.gt)}", f"> {_num(self.gt)}"]
        upper = [f"{_num(self.le)}]", f"<= {_num(self.le)}"] if self.le is not None else None
        if self.lt is not None:
            upper = [f"{_num(self.lt)})", f"< {_num(self.lt)}"]
        if lower and upper:
            return f"in {lower[0]}, {upper[0]}"
        if lower or upper:
            return (lower or upper or ["", ""])[1]
        return "a finite number"

    def contains(self, value: float) -> bool:
        """Whether ``value`` satisfies every bound (and is finite when required)."""
        if math.isnan(value) or (self.finite and math.isinf(value)):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _convert(value: Any, hint: Any, key: str) -> Any:  # noqa: PLR0911, PLR0912
    """``value`` as type ``hint``; ParameterError keyed ``key`` if it cannot be."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        converted = _convert(value, args[0], key)
        for rule in hint.__metadata__:
            if isinstance(rule, Range) and converted is not None:
                if not rule.contains(float(converted)):
                    raise ParameterError(f"must be {rule.describe()}, got {converted!r}", key)
        return converted
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [arg for arg in args if arg is not type(None)]
        if len(alternatives) == 1:  # ``X | None``: X's error, with its own (indexed) key
            return _convert(value, alternatives[0], key)
        errors = []
        for arg in alternatives:
            try:
                return _convert(value, arg, key)
            except ParameterError as exc:
                errors.append(exc.reason)
        raise ParameterError("; ".join(dict.fromkeys(errors)), key)
    if hint is Any or hint is object:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ParameterError(f"must be a mapping, got {value!r}", key)
        return parse_params(hint, value, key)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return parse_option(hint, value, name=key)
    if hint is bool:
        if not isinstance(value, bool | np.bool_):
            raise ParameterError(f"must be true or false, got {value!r}", key)
        return bool(value)
    if hint is int:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ParameterError(f"must be an integer, got {value!r}", key)
        return int(value)
    if hint is float:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise ParameterError(f"must be a number, got {value!r}", key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParameterError(f"must be a string, got {value!r}", key)
        return value
    if origin in (tuple, list):
        return _sequence(value, origin, args, key)
    if origin is dict or origin is Mapping or hint is dict:
        if not isinstance(value, Mapping):
            raise ParameterError(f"must be a mapping, got {value!r}", key)
        if len(args) == 2:  # noqa: PLR2004
            return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    return value


def parse_option(enum_cls: type[E], value: Any, *, name: str) -> E:
    """The member of ``enum_cls`` that ``value`` is or names: the one enum coercion, used for
    parameter fields and for the option arguments of the library's constructors.

    Args:
        enum_cls: the option enum (e.g. :class:`~mrihisto_kedro.nn.layers.NormKind`).
        value: a member, its value, or its string value in any case.
        name: the option's key in error messages (e.g. ``"norm"``).

    Raises:
        ParameterError: ``value`` is none of the members; the message names ``name`` and lists
            the allowed values.
    """
    if isinstance(value, enum_cls):
        return value
    for member in enum_cls:
        if member.value == value or (
            isinstance(value, str) and str(member.value).lower() == value.lower()
        ):
            return member
    options = ", ".join(str(m.value) for m in enum_cls)
    raise ParameterError(f"= {value!r} is not one of: {options}", name)


def _sequence(value: Any, origin: Any, args: tuple[Any, ...], key: str) -> Any:
    if not isinstance(value, list | tuple):
        raise ParameterError(f"must be a list, got {value!r}", key)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ParameterError(f"must have {len(args)} items, got {len(value)}", key)
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    item = args[0] if args else Any
    converted = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(converted) if origin is tuple else converted


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``cls``'s resolved field types with their ``Annotated`` rules (cached per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


class Params:
    """Base of the parameter and config dataclasses: coercion, declared ranges, cross-field
    rules, and the dict round trip of checkpoints and MLflow.

    Subclasses are (frozen) dataclasses; see the module docstring for what a field declares.
    """

    __dataclass_fields__: typing.ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        """Coerce every field to its type, check declared ranges, then :meth:`validate`."""
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            if field.init:
                value = _convert(getattr(self, field.name), hints[field.name], field.name)
                object.__setattr__(self, field.name, value)
        self.validate()

    def validate(self) -> None:
        """Rules across fields; raise with :func:`fail` naming the field. Default: none."""

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` with enums as their values and nested parameters as dicts
        (what checkpoints store and MLflow logs)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> typing.Self:
        """Build from :meth:`to_dict` output or a parameters mapping (:func:`parse_params`).

        Raises:
            ParameterError: unknown keys (named) or invalid values.
        """
        return parse_params(cls, values)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Params):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value] if isinstance(value, list) else tuple(map(_plain, value))
    return value


def parse_params(cls: type[T], values: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a parameter mapping, validating keys, types and ranges.

    Args:
        cls: a dataclass type (normally a :class:`Params`); defaults apply to absent keys.
        values: the mapping from ``parameters*.yml`` (``None`` means all defaults).
        prefix: the dotted key of ``values`` in the parameters, used in error messages.

    Returns:
        An instance of ``cls``.

    Raises:
        ParameterError: unknown key, missing required key, wrong type, invalid option, value out
            of its declared range or a broken cross-field rule, with the full dotted key.
    """
    values = dict(values or {})
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    where = f"'{prefix}'" if prefix else cls.__name__
    if unknown:
        reason = (
            f"has unknown key(s) {', '.join(repr(u) for u in unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
        raise ParameterError(reason, prefix) if prefix else ParameterError(f"{where} {reason}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParameterError("is required but missing", key)
    try:
        return cls(**kwargs)
    except ParameterError as exc:
        raise exc.under(prefix) from None
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"invalid parameters in {where}: {exc}") from exc


def checked(name: str, value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` with its ``Range`` rules: the parameter mechanism applied to
    one argument of a library function, e.g. ``checked("n", n, Annotated[int, Range(ge=0)])``.

    Raises:
        ParameterError: ``"parameter 'n' must be >= 0, got -1"``.
    """
    return _convert(value, hint, name)


def default_copies(cls: type, values: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Dotted keys of ``values`` that only repeat their field's default in ``cls``.

    A default copied into YAML drifts when the dataclass default changes (the issue 17 review
    found ``n_figure_tiles`` at 3 in YAML and 4 in code); the parameter files state only what
    differs. Nested parameter groups are searched; keys that are unknown or invalid are left
    to :func:`parse_params`.

    Returns:
        The keys (``"registration.metric_bins"``), in the order of ``values``.
    """
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    copies: list[str] = []
    for name, value in dict(values or {}).items():
        field = fields.get(name)
        if field is None:
            continue
        key = f"{prefix}.{name}" if prefix else name
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            copies += default_copies(type(default), value, key)
            continue
        try:
            same = _convert(value, hints[name], key) == _convert(default, hints[name], key)
        except ParameterError:
            continue
        if same:
            copies.append(key)
    return copies
