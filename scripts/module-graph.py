#!/usr/bin/env python3
"""Module dependency graph of one Rust crate, and a check that it has no cycle.

Usage: scripts/module-graph.py CRATE_SRC_DIR [--dot] [--quiet]
  e.g. scripts/module-graph.py migrator/src

Every file under CRATE_SRC_DIR is one module (`a.rs` and `a/mod.rs` are `a`, `a/b.rs` is
`a::b`; `lib.rs` is the crate root). An edge A -> B means code in A names an item that module
B defines: every `crate::`, `super::` and `self::` path in A (in `use` lines and in code) is
resolved segment by segment to the module that defines its item, following `pub use`
re-exports to the module that owns the item (so `crate::Plan` is an edge to `plan::types`,
not to the crate root). Re-export lines themselves (`pub use`, `pub(crate) use`) and `mod`
declarations are a facade, not dependencies. Comments, the trailing `#[cfg(test)]` module of
a file and `tests.rs` files are left out: tests may reach anywhere.

It prints the graph twice — per top-level module (the edges between sub-modules folded into
their top-level parent) and per module (file) — with the strongly connected components of
more than one module, and exits 1 if either graph has a cycle.
"""

import os
import re
import sys


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel == ["lib"] or rel == ["main"]:
        return ()
    if rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    """Code without comments, string literals and the trailing test module."""
    m = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text, re.M)
    if m:
        text = text[: m.start()]
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1] if i else " ")):
            if c == "r":
                hashes = re.match(r'r(#*)"', text[i:]).group(1)
                end = '"' + hashes
                j = text.find(end, i + 2 + len(hashes))
                i = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:i + 4]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(prefix, body):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = re.sub(r"\s+", "", it)
        if not it:
            continue
        it = re.sub(r"\bas\w+$", "", it) if "::" in it or "{" in it else it
        m = re.match(r"^([\w:]*?)::?\{(.*)\}$", it)
        if m:
            out += expand(prefix + [s for s in m.group(1).split("::") if s], m.group(2))
        else:
            out.append(prefix + [s for s in it.split("::") if s and s != "*"])
    return out


PATH = re.compile(r"\b(crate|super|self)((?:::\w+)*)(::\{)?")


def paths(code):
    """Every crate/super/self path: lists of segments, the first one the anchor."""
    out = []
    for m in PATH.finditer(code):
        segs = [m.group(1)] + [s for s in m.group(2).split("::") if s]
        if m.group(3):
            j, depth = m.end(), 1
            while j < len(code) and depth:
                depth += code[j] == "{"
                depth -= code[j] == "}"
                j += 1
            out += [segs + e for e in expand([], code[m.end():j - 1])]
        else:
            out.append(segs)
    return out


def absolute(module, segs):
    anchor, rest = segs[0], segs[1:]
    if anchor == "crate":
        base = ()
    elif anchor == "self":
        base = module
    else:
        base = module
        while rest is not None and anchor == "super":
            base = base[:-1]
            if rest and rest[0] == "super":
                rest = rest[1:]
            else:
                break
    return list(base) + rest


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__)
        return 2
    root = args[0]
    files = {}
    for d, _, names in os.walk(root):
        for nm in names:
            if nm.endswith(".rs") and nm != "tests.rs":
                p = os.path.join(d, nm)
                files[module_of(root, p)] = p
    modules = set(files)
    code, reexports = {}, {}
    for mod, p in files.items():
        text = strip(open(p, encoding="utf-8").read())
        facade = re.compile(r"^\s*pub(\([^)]*\))?\s+use\s+([^;]*);", re.M)
        rx = {}
        for m in facade.finditer(text):
            for segs in paths(m.group(2)) if re.match(r"\s*(crate|super|self)\b", m.group(2)) else \
                    [["self"] + s for s in expand([], m.group(2))]:
                target = absolute(mod, segs)
                if target:
                    rx[target[-1]] = target
        reexports[mod] = rx
        text = facade.sub("", text)
        text = re.sub(r"^\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*;", "", text, flags=re.M)
        # Visibility (`pub(super)`, `pub(in crate::x)`) names no item.
        text = re.sub(r"\bpub\s*\([^)]*\)", "pub", text)
        code[mod] = text

    def owner(segs, seen=()):
        """The module that defines the item `segs` names."""
        cur = ()
        for i, s in enumerate(segs):
            nxt = cur + (s,)
            if nxt in modules:
                cur = nxt
                continue
            target = reexports.get(cur, {}).get(s)
            if target and tuple(target) not in seen:
                return owner(target + segs[i + 1:], seen + (tuple(target),))
            return cur
        return cur

    edges = {m: set() for m in modules}
    for mod, text in code.items():
        for segs in paths(text):
            if len(segs) < 2 and segs[0] != "super":
                continue
            dst = owner(absolute(mod, segs))
            if dst != mod and dst != () and mod != ():
                edges[mod].add(dst)

    def name(m):
        return "::".join(m) or "crate"

    def sccs(graph):
        index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(graph[v]):
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

        sys.setrecursionlimit(10000)
        for v in sorted(graph):
            if v not in index:
                visit(v)
        return out

    top = {}
    for a, bs in edges.items():
        if a == ():
            continue
        top.setdefault(a[:1], set())
        for b in bs:
            if b[:1] != a[:1]:
                top[a[:1]].add(b[:1])
    quiet = "--quiet" in sys.argv
    failed = False
    for title, graph in (("top-level modules", top), ("modules (files)", {k: v for k, v in edges.items() if k != ()})):
        comps = sccs(graph)
        n_edges = sum(len(v) for v in graph.values())
        print(f"{root}: {title}: {len(graph)} modules, {n_edges} edges, "
              f"{'no cycle' if not comps else f'{len(comps)} cycle(s)'}")
        if not quiet:
            for a in sorted(graph):
                print(f"  {name(a)} -> {', '.join(sorted(name(b) for b in graph[a])) or '-'}")
        for c in comps:
            failed = True
            print(f"  CYCLE of {len(c)} modules: {', '.join(name(m) for m in c)}")
    if "--dot" in sys.argv:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
