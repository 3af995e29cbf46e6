"""Recovery plan: the dependency DAG of a tenant's machines turned into ordered waves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from draas.errors import PermanentError
from draas.models.plan import RecoveryPlan, Wave
from draas.models.tenant import TenantConfig


class DependencyCycle(PermanentError):
    """The dependencies loop back on themselves; ``cycle`` is the loop, first name repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle " + " -> ".join(cycle))


class UnknownDependency(PermanentError):
    """A machine depends on a name that is not in the graph."""

    def __init__(self, machine: str, dependency: str) -> None:
        self.machine = machine
        self.dependency = dependency
        super().__init__(f"{machine} depends on unknown machine {dependency}")


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first dependency cycle found (in graph order) as ``[a, b, ..., a]``, or None.

    Names that are not keys of ``graph`` are treated as leaves.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in graph:
        if state.get(root):
            continue
        # Iterative DFS so deep chains cannot hit the recursion limit.
        path: list[str] = [root]
        iters = [iter(graph[root])]
        state[root] = 1
        while iters:
            node = path[-1]
            for dep in iters[-1]:
                if dep not in graph:
                    continue
                if state.get(dep) == 1:
                    return path[path.index(dep) :] + [dep]
                if not state.get(dep):
                    state[dep] = 1
                    path.append(dep)
                    iters.append(iter(graph[dep]))
                    break
            else:
                state[node] = 2
                path.pop()
                iters.pop()
    return None


def build_waves(
    graph: Mapping[str, Sequence[str]], *, ignore_unknown: bool = False
) -> list[list[str]]:
    """Order ``graph`` (machine -> machines it depends on) into waves.

    A machine's wave is one after the latest wave of what it depends on, so every wave can
    be recovered in parallel once the previous ones are up. Inside a wave, machines keep
    the order of ``graph``.

    Args:
        graph: dependencies per machine.
        ignore_unknown: treat dependencies outside ``graph`` as already running (used when
            recovering a subset of a tenant) instead of raising.

    Raises:
        DependencyCycle: the graph is not a DAG.
        UnknownDependency: a dependency is not in ``graph`` and ``ignore_unknown`` is False.
    """
    for machine, deps in graph.items():
        for dep in deps:
            if dep not in graph and not ignore_unknown:
                raise UnknownDependency(machine, dep)
    cycle = find_cycle(graph)
    if cycle:
        raise DependencyCycle(cycle)

    level: dict[str, int] = {}

    def wave_of(node: str) -> int:
        # Memoised longest-path depth; the graph is acyclic here, and resolving in
        # topological order below keeps the recursion shallow.
        if node not in level:
            level[node] = 1 + max((wave_of(d) for d in graph[node] if d in graph), default=0)
        return level[node]

    for node in _topological(graph):
        wave_of(node)
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=0))]
    for node in graph:
        waves[level[node] - 1].append(node)
    return waves


def _topological(graph: Mapping[str, Sequence[str]]) -> list[str]:
    remaining = {n: {d for d in deps if d in graph} for n, deps in graph.items()}
    order: list[str] = []
    ready = [n for n, deps in remaining.items() if not deps]
    dependants: dict[str, list[str]] = {n: [] for n in graph}
    for n, deps in remaining.items():
        for d in deps:
            dependants[d].append(n)
    while ready:
        node = ready.pop()
        order.append(node)
        for child in dependants[node]:
            remaining[child].discard(node)
            if not remaining[child]:
                ready.append(child)
    return order


def recovery_plan(tenant: TenantConfig, machines: Iterable[str] | None = None) -> RecoveryPlan:
    """The tenant's recovery waves, for all machines or only ``machines``.

    When only some machines are recovered (one protection group, say), dependencies on the
    others are taken as already satisfied.
    """
    wanted = None if machines is None else set(machines)
    graph = {
        m.name: list(m.depends_on) for m in tenant.machines if wanted is None or m.name in wanted
    }
    if wanted is not None:
        missing = wanted - set(graph)
        if missing:
            raise KeyError(f"not machines of {tenant.id}: {sorted(missing)}")
    waves = build_waves(graph, ignore_unknown=wanted is not None)
    return RecoveryPlan(
        tenant=tenant.id,
        waves=[Wave(index=i, machines=names) for i, names in enumerate(waves, start=1)],
    )
