"""The ways to obtain a T2 slice (:class:`Method`) and the table's row order.

A method name is a :class:`Method` value, optionally followed by :data:`STYLE_SUFFIX` (its
style-refined variant, e.g. ``pix2pix+style``). No Kedro, no torch.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CONDITIONAL",
    "INPUT",
    "REFINABLE",
    "STYLE_SUFFIX",
    "TARGET",
    "Method",
    "base_method",
    "is_paired",
    "method_order",
]

#: suffix of a style-refined method's name
STYLE_SUFFIX = "+style"
#: names of the synthesised sequence (B of the tile set) and of the input sequence (A)
TARGET, INPUT = "t2", "t1"


class Method(StrEnum):
    """A way to obtain a T2 slice (see :mod:`mrihisto_kedro.sequences`)."""

    PIX2PIX = "pix2pix"
    CYCLEGAN = "cyclegan"
    DCGAN = "dcgan"
    IDENTITY_T1 = "identity_t1"
    INVERTED_T1 = "inverted_t1"


#: methods with a paired output per test slice (generators and baselines)
CONDITIONAL: tuple[Method, ...] = (
    Method.PIX2PIX,
    Method.CYCLEGAN,
    Method.IDENTITY_T1,
    Method.INVERTED_T1,
)
#: methods refined by style transfer (seed 002 refines its generators' outputs)
REFINABLE: tuple[Method, ...] = (Method.PIX2PIX, Method.CYCLEGAN, Method.DCGAN)


def method_order(refined: bool = True) -> list[str]:
    """Row order of the table: each generator then its refinement, then the baselines."""
    out: list[str] = []
    for m in (Method.PIX2PIX, Method.CYCLEGAN, Method.DCGAN):
        out.append(m.value)
        if refined:
            out.append(m.value + STYLE_SUFFIX)
    return out + [Method.IDENTITY_T1.value, Method.INVERTED_T1.value]


def base_method(method: str) -> Method:
    """The :class:`Method` behind a method name (``dcgan+style`` -> ``Method.DCGAN``)."""
    return Method(method.removesuffix(STYLE_SUFFIX))


def is_paired(method: str) -> bool:
    """Whether the method's slice ``i`` belongs to test slice ``i`` (all but the DCGAN's)."""
    return base_method(method) is not Method.DCGAN
