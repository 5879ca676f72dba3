#!/usr/bin/env python3
"""Module graph of a Rust crate, and its cycles.

    scripts/module-graph.py proxy            # edges between top-level modules, cycles at every level
    scripts/module-graph.py proxy --full     # every module, every edge
    scripts/module-graph.py proxy --dot      # Graphviz of the top level

Exit status 1 when there is a cycle, so CI can run it.

What counts as an edge: a reference from a module's source (`use` trees and paths in code)
through `crate::`, `super::`, `self::` or a child module's name, resolved to the module that
*defines* the item: re-exports (`pub use ...`) are followed, so `crate::Config` is an edge to
the module where `Config` is defined, not to `lib.rs`. A module re-exporting one of its own
descendants (`pub use self::raw::X` in `config/mod.rs`) is a facade, not a dependency: no
edge. Test code (`#[cfg(test)]` items and test-only modules), comments and string literals are
ignored.

What counts as a cycle: for the crate and for every module with children, its children (each
with everything below it) and the module's own file are collapsed into one node each; a
strongly connected component of more than one node is a cycle. So a cycle between two
top-level modules is reported even when it runs through different submodules of each.

Only the standard library; paths via `#[path]`, macros and glob re-exports are not followed.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ----- source text -----------------------------------------------------------------------


def strip_comments_and_strings(src):
    """Source with comments removed and string/char literal contents emptied (lines kept)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
            continue
        m = re.match(r'b?r(#*)"', src[i:i + 260]) if c in "rb" and (i == 0 or not re.match(r"\w", src[i - 1])) else None
        if m:
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


def strip_test_items(text):
    """Removes items under `#[cfg(test)]`; returns (text, names of test-only `mod x;`)."""
    test_mods = []
    attr = re.compile(r"#\[cfg\(test\)\]")
    while True:
        m = attr.search(text)
        if not m:
            return text, test_mods
        j = m.end()
        # Further attributes on the same item.
        while True:
            k = re.match(r"\s*#\[", text[j:])
            if not k:
                break
            depth, p = 0, j + k.end() - 1
            while p < len(text):
                if text[p] == "[":
                    depth += 1
                elif text[p] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                p += 1
            j = p + 1
        semi, brace = text.find(";", j), text.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            mm = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text[j:semi + 1])
            if mm:
                test_mods.append(mm.group(1))
            end = semi
        else:
            end = matching_brace(text, brace)
        text = text[:m.start()] + "\n" * text.count("\n", m.start(), end + 1) + text[end + 1:]


# ----- use trees -------------------------------------------------------------------------


def parse_use_tree(s):
    """`a::{b, c::d as e, self}` -> [(['a','b'], 'b'), (['a','c','d'], 'e'), (['a'], 'a')]."""
    s = re.sub(r"\s+", " ", s).strip()
    pos = 0

    def tree(prefix):
        nonlocal pos
        out = []
        segs = list(prefix)
        while True:
            skip_ws()
            if s.startswith("{", pos):
                pos += 1
                while True:
                    skip_ws()
                    if s.startswith("}", pos):
                        pos += 1
                        break
                    out.extend(tree(segs))
                    skip_ws()
                    if s.startswith(",", pos):
                        pos += 1
                return out
            if s.startswith("*", pos):
                pos += 1
                return [(segs + ["*"], None)]
            m = re.compile(r"::|" + IDENT).match(s, pos)
            if not m:
                return out
            tok = m.group(0)
            pos = m.end()
            if tok == "::":
                continue
            if tok == "self" and segs and segs != ["self"] and not re.compile(r"\s*::").match(s, pos):
                alias = segs[-1]
                k = re.compile(r"\s+as\s+(" + IDENT + ")").match(s, pos)
                if k:
                    alias, pos = k.group(1), k.end()
                return [(segs, alias)]
            segs = segs + [tok]
            if re.compile(r"\s*::").match(s, pos):
                continue
            alias = tok
            k = re.compile(r"\s+as\s+(" + IDENT + ")").match(s, pos)
            if k:
                alias, pos = k.group(1), k.end()
            return [(segs, alias)]

    def skip_ws():
        nonlocal pos
        while pos < len(s) and s[pos] == " ":
            pos += 1

    return tree([])


# ----- the crate -------------------------------------------------------------------------


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of names; () is the crate root
        self.file = file
        self.children = {}
        self.items = set()
        self.uses = []  # (segments, alias, is_reexport)
        self.code_paths = []  # segment lists found in code
        self.text = ""
        self.code = ""  # the text without `use` items

    @property
    def name(self):
        return "::".join(self.path) or "crate"


def child_file(parent, name):
    d = os.path.dirname(parent.file)
    base = os.path.basename(parent.file)
    if base not in ("lib.rs", "main.rs", "mod.rs"):
        d = os.path.join(d, os.path.splitext(base)[0])
    for cand in (os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None


def load(mod, modules):
    with open(mod.file, encoding="utf-8") as f:
        text = strip_comments_and_strings(f.read())
    text, test_mods = strip_test_items(text)
    mod.text = text
    modules[mod.path] = mod
    for m in re.finditer(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])", text):
        name = m.group(1)
        if m.group(2) == "{" or name in test_mods:
            continue
        f = child_file(mod, name)
        if f is None:
            print(f"warning: {mod.name}: no file for `mod {name};`", file=sys.stderr)
            continue
        child = Module(mod.path + (name,), f)
        mod.children[name] = child
        load(child, modules)
    for m in re.finditer(
        r"\b(?:fn|struct|enum|trait|type|const|static|union)\s+(" + IDENT + ")", text
    ):
        mod.items.add(m.group(1))
    for m in re.finditer(r"macro_rules!\s*(" + IDENT + ")", text):
        mod.items.add(m.group(1))
    for m in re.finditer(r"(\bpub(?:\s*\([^)]*\))?\s+)?\buse\s+([^;]+);", text):
        reexport = m.group(1) is not None
        for segs, alias in parse_use_tree(m.group(2)):
            mod.uses.append((segs, alias, reexport))
    no_use = re.sub(r"\buse\s+[^;]+;", lambda k: "\n" * k.group(0).count("\n"), text)
    mod.code = re.sub(r"\bmod\s+" + IDENT + r"\s*;", "", no_use)
    for m in re.finditer(r"(?<![\w:])((?:" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)", no_use):
        segs = [s.strip() for s in m.group(1).split("::")]
        if segs[0] in ("crate", "super", "self") or segs[0] in mod.children:
            mod.code_paths.append(segs)


def start_of(mod, segs, modules):
    """Where a path starts: (module, remaining segments), or None for an external path."""
    first = segs[0]
    if first == "crate":
        return modules[()], segs[1:]
    if first == "self":
        return mod, segs[1:]
    if first == "super":
        cur, rest = mod, segs
        while rest and rest[0] == "super":
            cur = modules[cur.path[:-1]]
            rest = rest[1:]
        return cur, rest
    if first in mod.children:
        return mod, segs
    return None


def resolve(mod, segs, modules, depth=0):
    """The module defining the item `segs` names, seen from `mod` (None: another crate)."""
    s = start_of(mod, segs, modules)
    if s is None or depth > 20:
        return None
    cur, rest = s
    while rest:
        name = rest[0]
        if name in cur.children:
            cur, rest = cur.children[name], rest[1:]
            continue
        if name in cur.items or name == "*":
            return cur
        target = next((u for u, alias, _ in cur.uses if alias == name), None)
        if target is not None:
            # `None`: re-exported from another crate (`pub use ficus_core::Side`).
            return resolve(cur, target + rest[1:], modules, depth + 1)
        return cur
    return cur


def edges_of(mod, modules):
    out = set()

    def add(target):
        if target is not None and target.path != mod.path:
            out.add(target.path)

    for segs, alias, reexport in mod.uses:
        target = resolve(mod, segs, modules)
        if target is None:
            continue
        # A module re-exporting its own descendant is a facade, not a dependency — unless
        # the module's own code uses the name too.
        if reexport and target.path[: len(mod.path)] == mod.path:
            if alias is None or not re.search(r"(?<![\w:])" + re.escape(alias) + r"\b", mod.code):
                continue
        add(target)
    for segs in mod.code_paths:
        add(resolve(mod, segs, modules))
    return out


# ----- cycles ----------------------------------------------------------------------------


def sccs(nodes, edges):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def collapsed(level, full_edges):
    """The graph among `level`'s children (and its own file, named `.`)."""
    n = len(level)

    def node(path):
        if path[:n] != level:
            return None
        return path[n] if len(path) > n else "."

    edges = defaultdict(set)
    for src, dsts in full_edges.items():
        a = node(src)
        if a is None:
            continue
        for dst in dsts:
            b = node(dst)
            if b is not None and b != a:
                edges[a].add(b)
    return edges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("crate", help="crate directory (with src/lib.rs or src/main.rs)")
    ap.add_argument("--full", action="store_true", help="print every module's edges")
    ap.add_argument("--dot", action="store_true", help="print the top level as Graphviz")
    args = ap.parse_args()

    root_file = next(
        (f for f in (os.path.join(args.crate, "src", x) for x in ("lib.rs", "main.rs")) if os.path.exists(f)),
        None,
    )
    if root_file is None:
        sys.exit(f"{args.crate}: no src/lib.rs or src/main.rs")
    modules = {}
    load(Module((), root_file), modules)
    full = {p: edges_of(m, modules) for p, m in modules.items()}

    top = collapsed((), full)
    top.pop(".", None)  # lib.rs: declarations and the public facade
    if args.dot:
        print("digraph modules {")
        for a in sorted(top):
            for b in sorted(top[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0

    print(f"{args.crate}: {len(modules)} modules")
    names = sorted(modules[()].children)
    print("top-level edges (module -> what it uses):")
    width = max((len(x) for x in names), default=0)
    for a in names:
        print(f"  {a:<{width}} -> {', '.join(sorted(top.get(a, ()))) or '-'}")
    if args.full:
        print("every module:")
        for p in sorted(full):
            deps = ", ".join("::".join(d) or "crate" for d in sorted(full[p]))
            print(f"  {modules[p].name} -> {deps or '-'}")

    found = []
    for path, mod in sorted(modules.items()):
        if not mod.children:
            continue
        graph = top if path == () else collapsed(path, full)
        nodes = set(graph) | {b for bs in graph.values() for b in bs}
        for comp in sccs(nodes, graph):
            where = mod.name if path else "top level"
            label = [c if c != "." else f"{mod.name} (its own file)" for c in comp]
            found.append(f"{where}: {' <-> '.join(label)}")
    if found:
        print(f"cycles ({len(found)}):")
        for f in found:
            print(f"  {f}")
        return 1
    print("no module cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
