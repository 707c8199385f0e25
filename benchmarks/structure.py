"""Code-structure figures for a source tree: lines per module, import cycles, decoding-option homes.

    python benchmarks/structure.py                 # this checkout
    python benchmarks/structure.py --root /tmp/old  # another tree (e.g. a `git worktree` of an older commit)

Import cycles count every import between project modules, including imports inside functions
(the ones that hide a cycle from a top-level reading): the strongly connected components with more
than one module of the module import graph, and the number of modules in them. "Places that declare
a decoding option" counts the functions and dataclasses whose own signature or fields name one of
the decoding options (beam_size, length_penalty, temperature, top_p, no_repeat_ngram_size), as a
reader who wants to change a default would have to visit them. "Places that test a task name"
counts the comparisons of something named *task* with "chat" or "translation" (translator/tasks.py,
where the tasks are defined, excepted). "Readers of checkpoint metadata" counts the functions that
read a checkpoint's bundle themselves: they read `x[BUNDLE_KEY]` or `.get(BUNDLE_KEY)` (writing the bundle is not
reading it), name read_export, or call torch.load; those outside the checkpoint module are counted apart.
"Modules per layer" assigns each module to the layer of LAYERS (bottom first) whose package or module it is
in (the longest match; modules of a flat tree that no layer names are counted as "unplaced"), and "imports
that point up" counts the imports from a module to one of a higher layer (the layering says none may).
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

OPTIONS = {"beam_size", "length_penalty", "temperature", "top_p", "no_repeat_ngram_size"}
#: The layers, bottom first: a module may import from its own layer and the ones below (README.md, "Layout").
LAYERS = (
    ("foundation", ("translator.atomic", "translator.cpu_fastpaths", "translator.tokenizer")),
    ("models", ("translator.models",)),
    ("decoding", ("translator.decoding",)),
    ("tasks", ("translator.tasks",)),
    ("data", ("translator.data",)),
    ("artifacts", ("translator.artifacts",)),
    ("engines", ("translator.engines",)),
    ("training", ("translator.training",)),
    ("inference", ("translator.inference",)),
    ("evaluation", ("translator.evaluation",)),
    ("lab", ("translator.lab",)),
    ("serve", ("translator.serve",)),
    ("entry", ("translator", "translator.__main__", "translator.cli", "translator.runtime", "translator.app",
               "translator.evaluate_cmd")),
)
UNPLACED = "unplaced"


def modules(root: Path) -> dict[str, Path]:
    pkg = root / "translator"
    return {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(pkg.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                parts = name.split(".")[: -node.level] if not path.name == "__init__.py" else name.split(".")
                base = ".".join([*parts, node.module]) if node.module else ".".join(parts)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def option_homes(files: dict[str, Path]) -> list[str]:
    homes = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = {a.arg for a in node.args.args + node.args.kwonlyargs}
                if args & OPTIONS:
                    homes.append(f"{name}.{node.name}")
            elif isinstance(node, ast.ClassDef):
                fields = {t.target.id for t in node.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
                if len(fields & OPTIONS) >= 2:
                    homes.append(f"{name}.{node.name}")
    return homes


TASK_NAMES = {"chat", "translation"}


def _names_task(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Name) and "task" in n.id.lower()) or (isinstance(n, ast.Attribute) and "task" in n.attr.lower())
               for n in ast.walk(node))


def task_name_tests(files: dict[str, Path]) -> list[str]:
    found = []
    for name, path in files.items():
        if name == "translator.tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and s.value in TASK_NAMES for s in sides) and \
                        any(_names_task(s) for s in sides if not isinstance(s, ast.Constant)):
                    found.append(f"{name}:{node.lineno}")
    return found


def _reads_bundle(node: ast.AST) -> bool:
    """Reads a checkpoint's bundle or an export's metadata: `x[BUNDLE_KEY]` read (not assigned), `.get(BUNDLE_KEY)`,
    `read_export`, `torch.load`."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id == "BUNDLE_KEY":
        return isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return any(isinstance(a, ast.Name) and a.id == "BUNDLE_KEY" for a in node.args)
    if isinstance(node, ast.Name) and node.id == "read_export":
        return True
    return (isinstance(node, ast.Attribute) and node.attr == "load" and isinstance(node.value, ast.Name)
            and node.value.id == "torch")


def metadata_readers(files: dict[str, Path]) -> list[str]:
    """Functions that read a checkpoint's metadata themselves (writers of the bundle are not counted)."""
    found = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(map(_reads_bundle, ast.walk(node))):
                found.append(f"{name}.{node.name}")
    return sorted(set(found))


#: The module that owns the checkpoint format (CheckpointMeta); readers elsewhere are what the count is about.
METADATA_HOMES = ("translator.checkpoint", "translator.artifacts.checkpoint")


def layer_of(name: str) -> str:
    """The layer whose package or module `name` is in (the longest match), or UNPLACED."""
    best, length = UNPLACED, -1
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            inside = name == prefix or (name.startswith(prefix + ".") and prefix != "translator")
            if inside and len(prefix) > length:
                best, length = layer, len(prefix)
    return best


def layering(graph: dict[str, set[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """(modules per layer, bottom first; imports that point to a higher layer as 'a -> b')."""
    rank = {layer: i for i, (layer, _) in enumerate(LAYERS)}
    per_layer: dict[str, list[str]] = {layer: [] for layer, _ in LAYERS}
    up = []
    for name in sorted(graph):
        per_layer.setdefault(layer_of(name), []).append(name)
        for target in sorted(graph[name]):
            a, b = layer_of(name), layer_of(target)
            if a in rank and b in rank and rank[b] > rank[a]:
                up.append(f"{name} -> {target}")
    return {k: v for k, v in per_layer.items() if v}, up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = modules(args.root)
    graph = {name: imports(name, path, set(files)) for name, path in files.items()}
    found = cycles(graph)
    lines = sorted(((len(p.read_text(encoding="utf-8").splitlines()), n) for n, p in files.items()), reverse=True)
    homes = option_homes(files)
    task_tests, readers = task_name_tests(files), metadata_readers(files)
    per_layer, up = layering(graph)
    report = {"root": str(args.root), "largest_modules": lines[:5], "import_cycles": found,
              "modules_in_cycles": sum(len(c) for c in found), "decoding_option_homes": homes,
              "task_name_tests": task_tests, "metadata_readers": readers, "modules_per_layer": per_layer,
              "imports_pointing_up": up}
    print(f"modules per layer (bottom first): "
          f"{', '.join(f'{layer} {len(names)}' for layer, names in per_layer.items())} ({len(files)} modules)")
    for layer, names in per_layer.items():
        print(f"  {layer}: {', '.join(n.removeprefix('translator.') for n in names)}")
    print(f"imports that point up a layer: {len(up)}{': ' if up else ''}{', '.join(up)}")
    print(f"largest modules: {', '.join(f'{n} {c}' for c, n in lines[:5])}")
    print(f"import cycles (SCCs > 1 module, function-level imports included): {len(found)}, "
          f"{report['modules_in_cycles']} modules: {found}")
    print(f"places that declare a decoding option: {len(homes)}: {', '.join(homes)}")
    print(f"places that test a task name: {len(task_tests)}: {', '.join(task_tests)}")
    outside = [r for r in readers if r.rpartition(".")[0] not in METADATA_HOMES]
    report["metadata_readers_outside_checkpoint_module"] = outside
    print(f"readers of checkpoint metadata: {len(readers)}, {len(outside)} outside the checkpoint module: "
          f"{', '.join(outside) or '-'} (inside: {', '.join(r for r in readers if r not in outside)})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
