"""Hostile variants of a platform's body: every place in it given every odd JSON value.

A body the platform signed may still hold anything anywhere; a parser must answer its Malformed
(a refusal the webhook logs), never crash (a 500 the platform retries, or a dropped frame)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

ODD: tuple[Any, ...] = (None, True, 0, 1.5, "", "x", [], [1], {}, {"a": 1}, [[{"tag": 1}]])


def places(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in a body a value can be put at (keys of objects, indexes of lists), the root first."""
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += places(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += places(v, (*at, i))
    return out


def variants(body: Any) -> Iterator[Any]:
    """`body` with one place replaced by one odd value, for every place and value."""
    for path in places(body):
        for value in ODD:
            if not path:
                yield value
                continue
            changed = copy.deepcopy(body)
            node = changed
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = value
            yield changed
