"""Dependencies between tasks: a new edge must not close a cycle.

`edges[a]` holds the tasks that `a` waits for. Adding "a waits for b" makes a cycle exactly when
`a` can already be reached from `b`; the cycle is then reported as a path a → b → … → a.
"""

from __future__ import annotations

from collections.abc import Mapping, Set


def find_cycle(edges: Mapping[int, Set[int]], task: int, depends_on: int) -> list[int] | None:
    """The cycle that "task waits for depends_on" would close, or None when it closes none."""
    if task == depends_on:
        return [task, task]
    # depth-first search from depends_on to task, remembering the way back
    parent: dict[int, int] = {}
    stack = [depends_on]
    seen = {depends_on}
    while stack:
        node = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt in seen:
                continue
            parent[nxt] = node
            if nxt == task:
                path = [task]
                while path[-1] != depends_on:
                    path.append(parent[path[-1]])
                return [task, *reversed(path)]
            seen.add(nxt)
            stack.append(nxt)
    return None
