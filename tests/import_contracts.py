"""Two import-linter contract types that its built-in ones cannot express (registered in
pyproject.toml ``[tool.importlinter] contract_types``, checked by ``lint-imports`` in ``make check``).

- ``public_modules``: a domain package is used from the other domains only through the modules
  named public (an allowlist: a module added to a domain is private until it is named).
- ``no_cycles``: no import cycle between any two modules of the root packages, whichever
  packages they sit in. (import-linter's ``acyclic_siblings`` compares packages level by level;
  this finds the module-level cycles that break at import time.)
"""

from __future__ import annotations

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _line_numbers(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return ", ".join(str(detail["line_number"]) for detail in details) or "?"


class PublicModulesContract(Contract):
    """Options: ``domains`` (packages, e.g. access.catalog), ``public`` (module names inside a
    domain that the other domains may import, e.g. services)."""

    type_name = "public_modules"

    domains = fields.ListField(subfield=fields.StringField())
    public = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        domains = list(self.domains)  # type: ignore[call-overload]
        public = set(self.public)  # type: ignore[call-overload]

        def domain_of(module: str) -> str | None:
            return next((d for d in domains if module == d or module.startswith(d + ".")), None)

        illegal = []
        for domain in domains:
            for imported in sorted(graph.find_descendants(domain)):
                first = imported[len(domain) + 1 :].split(".")[0]
                if first in public:
                    continue
                for importer in sorted(graph.find_modules_that_directly_import(imported)):
                    source = domain_of(importer)
                    if source is not None and source != domain:
                        illegal.append((importer, imported, _line_numbers(graph, importer, imported)))
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal, "public": sorted(public)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        public = ", ".join(check.metadata["public"])
        output.print_error(f"A domain may import another domain's {public} only:", bold=False)
        output.new_line()
        for importer, imported, lines in check.metadata["illegal"]:
            output.print_error(f"- {importer} -> {imported} (l.{lines})", bold=False)
        output.new_line()


class NoCyclesContract(Contract):
    """Options: ``packages`` (root packages whose modules must not import each other in a cycle)."""

    type_name = "no_cycles"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        roots = tuple(self.packages)  # type: ignore[call-overload]
        modules = sorted(m for m in graph.modules if m.split(".")[0] in roots)
        inside = set(modules)
        edges = {m: sorted(graph.find_modules_directly_imported_by(m) & inside) for m in modules}
        cycles = [sorted(component) for component in _strongly_connected(modules, edges) if len(component) > 1]
        described = []
        for component in cycles:
            members = set(component)
            links = [
                f"{a} -> {b} (l.{_line_numbers(graph, a, b)})" for a in component for b in edges[a] if b in members
            ]
            described.append(links)
        return ContractCheck(kept=not cycles, metadata={"cycles": described})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for links in check.metadata["cycles"]:
            output.print_error("These modules import each other in a cycle:", bold=False)
            output.new_line()
            for link in links:
                output.print_error(f"- {link}", bold=False)
            output.new_line()


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (import graphs can be deeper than Python's recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = edges.get(node, [])
            for position in range(next_child, len(children)):
                child = children[position]
                if child not in index:
                    work.append((node, position + 1))
                    work.append((child, 0))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return components
