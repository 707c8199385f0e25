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
open a checkpoint's bundle themselves: they name BUNDLE_KEY or read_export, or call torch.load.
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

OPTIONS = {"beam_size", "length_penalty", "temperature", "top_p", "no_repeat_ngram_size"}


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


def metadata_readers(files: dict[str, Path]) -> list[str]:
    found = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            reads = any((isinstance(n, ast.Name) and n.id in ("BUNDLE_KEY", "read_export"))
                        or (isinstance(n, ast.Attribute) and n.attr == "load" and isinstance(n.value, ast.Name)
                            and n.value.id == "torch")
                        for n in ast.walk(node))
            if reads:
                found.append(f"{name}.{node.name}")
    return sorted(set(found))


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
    report = {"root": str(args.root), "largest_modules": lines[:5], "import_cycles": found,
              "modules_in_cycles": sum(len(c) for c in found), "decoding_option_homes": homes,
              "task_name_tests": task_tests, "metadata_readers": readers}
    print(f"largest modules: {', '.join(f'{n} {c}' for c, n in lines[:5])}")
    print(f"import cycles (SCCs > 1 module, function-level imports included): {len(found)}, "
          f"{report['modules_in_cycles']} modules: {found}")
    print(f"places that declare a decoding option: {len(homes)}: {', '.join(homes)}")
    print(f"places that test a task name: {len(task_tests)}: {', '.join(task_tests)}")
    print(f"readers of checkpoint metadata: {len(readers)}: {', '.join(readers)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
