"""Checks that the engine's and the Python package's imports point one way.

Rust (src/engine): every path a file names (`crate::engine::a::b`,
`super::x`, and `use` groups in braces) is resolved to the file it lands
in. Two rules:

- no circle among files, nor among the subsystem folders (a file directly
  under src/engine counts as a folder of its own);
- a folder uses only the folders below it in LAYERS, the order the map in
  src/engine/mod.rs gives (the leaves may be used by any).

Test-only code is left out: testkit/, files named *_tests.rs, and inline
`#[cfg(test)] mod name { ... }` blocks.

Python (python/metricstore): every import of a package module, at any
depth of a function, outside `if TYPE_CHECKING:` blocks; no circle among
the modules. `__init__` is the package's facade and is left out.

Run from the project root: `python .ci/import_graph.py`. Prints the graph's
size and what is wrong; exits 1 if anything is.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ENGINE = Path("src/engine")
PACKAGE = Path("python/metricstore")

# Top to bottom: each folder may use only those after it.
LAYERS = [
    "ccbackend",
    "ingest",
    "durable",
    "snapshot",
    "wal",
    "storage",
    "query",
    "store",
    "memory",
    "model",
]
LEAVES = {"error", "bytes", "parallel", "json"}


def module_path(file: Path) -> list[str]:
    """The module path of an engine file below `crate::engine`."""
    parts = list(file.relative_to(ENGINE).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def block_end(text: str, start: int) -> int:
    """Where the block whose `{` ends just before `start` ends: the index
    after its matching `}`."""
    depth, i = 1, start
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return i


def without_test_blocks(text: str) -> str:
    """`text` with every `#[cfg(test)] mod name { ... }` block cut out."""
    out, at = [], 0
    for match in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if match.start() < at:
            continue
        i = block_end(text, match.end())
        out.append(text[at : match.start()])
        at = i
    out.append(text[at:])
    return "".join(out)


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` as ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    items, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    return [p for item in items if item for p in expand_use(prefix + item)]


def named_paths(text: str) -> list[str]:
    """Every engine-relative or `super` path the code names."""
    paths = []
    for use in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand_use(use.group(1))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    paths += re.findall(
        r"(?:crate::engine|(?:super::)+)(?:::)?[a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*", body
    )
    return paths


def resolve(path: str, here: list[str], files: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The engine file (as a module path) that `path`, named in module
    `here`, lands in; None if it is not an engine path."""
    segments = path.split("::")
    if segments[:2] == ["crate", "engine"]:
        target, rest = [], segments[2:]
    elif segments[0] in ("super", "self"):
        ups = 0
        while segments and segments[0] in ("super", "self"):
            ups += segments.pop(0) == "super"
        target, rest = here[: len(here) - ups], segments
    else:
        return None
    for segment in rest:
        if tuple([*target, segment]) not in files:
            break
        target.append(segment)
    return tuple(target) if tuple(target) in files else None


def modules_in(text: str, here: list[str]) -> list[tuple[str, list[str]]]:
    """`text` split into (code, module path): inline `mod name { ... }`
    blocks are modules of their own, below `here`."""
    pieces, at = [], 0
    for match in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        if match.start() < at:
            continue
        i = block_end(text, match.end())
        pieces.append((text[at : match.start()], here))
        pieces += modules_in(text[match.end() : i - 1], [*here, match.group(1)])
        at = i
    pieces.append((text[at:], here))
    return pieces


def rust_graph() -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    sources = {}
    for file in sorted(ENGINE.rglob("*.rs")):
        rel = file.relative_to(ENGINE)
        if rel.parts[0] == "testkit" or file.name.endswith("_tests.rs"):
            continue
        text = re.sub(r"//[^\n]*", "", file.read_text(encoding="utf-8"))
        sources[file] = without_test_blocks(text)
    files = {tuple(module_path(f)) for f in sources}
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in files}
    for file, text in sources.items():
        here = module_path(file)
        if not here:
            continue  # src/engine/mod.rs: the crate's facade
        for code, module in modules_in(text, here):
            for path in named_paths(code):
                target = resolve(path, module, files)
                if target and target != tuple(here) and target != ():
                    graph[tuple(here)].add(target)
    graph.pop((), None)
    return graph


def circles(graph: dict) -> list[list]:
    """The strongly connected components of more than one node."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    found: list = []
    counter = 0

    def visit(node: object) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def python_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def imported(node: ast.AST) -> list[str]:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:
                return [alias.name for alias in node.names]
            if node.level == 1:
                return [node.module.split(".")[0]]
            if node.module and node.module.startswith("metricstore."):
                return [node.module.split(".")[1]]
            if node.module == "metricstore":
                return [alias.name for alias in node.names]
        if isinstance(node, ast.Import):
            return [a.name.split(".")[1] for a in node.names if a.name.startswith("metricstore.")]
        return []

    def walk(node: ast.AST, module: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    walk(other, module)
                continue
            graph[module].update(m for m in imported(child) if m in modules and m != module)
            walk(child, module)

    for module in modules:
        walk(ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8")), module)
    return graph


def main() -> int:
    problems = []
    files = rust_graph()
    folders: dict[str, set[str]] = {}
    for source, targets in files.items():
        folders.setdefault(source[0], set()).update(t[0] for t in targets if t[0] != source[0])
    for circle in circles(files):
        problems.append("engine files in a circle: " + " -> ".join("/".join(m) for m in circle))
    for circle in circles(folders):
        problems.append("engine folders in a circle: " + " -> ".join(circle))
    rank = {name: i for i, name in enumerate(LAYERS)}
    for folder, used in sorted(folders.items()):
        if folder not in rank and folder not in LEAVES:
            problems.append(f"engine folder {folder} is not in LAYERS (.ci/import_graph.py)")
            continue
        for other in sorted(used):
            if other in LEAVES:
                continue
            if folder in LEAVES or rank.get(other, -1) <= rank.get(folder, len(LAYERS)):
                problems.append(f"engine: {folder} uses {other}, which is not below it")
    package = python_graph()
    for circle in circles(package):
        problems.append("python modules in a circle: " + " -> ".join(circle))
    edges = sum(len(t) for t in files.values())
    print(
        f"engine: {len(files)} files in {len(folders)} folders, {edges} file edges; "
        f"python: {len(package)} modules, {sum(len(t) for t in package.values())} edges"
    )
    for problem in problems:
        print(problem)
    print("import graph: " + ("PROBLEMS (above)" if problems else "no circle, layers respected"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
