"""Summarise pytest-gremlins JSON reports: score per module and every surviving mutant (scripts/mutation.sh).

Survivors listed in scripts/mutation_equivalent.md (a markdown table: module | source line | mutation |
reason) are shown as "equivalent"; matching is by module, the stripped source line and the tool's
mutation description, so the list survives edits that only move lines. Exit status 1 when a survivor
is not listed. Standard library only.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path


def read_equivalent(path: Path) -> dict[tuple[str, str, str], str]:
    """Rows `| module[::function] | `source line` | mutation | reason |` of the markdown table."""
    out: dict[tuple[str, str, str], str] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or ".py" not in cells[0]:
            continue
        module, src, mutation = cells[0], cells[1].strip("`").strip(), cells[2].strip("`").strip()
        out[(module, src, mutation)] = "|".join(cells[3:]).strip()
    return out


def enclosing_functions(source: str) -> dict[int, str]:
    """Line -> name of the innermost function (or class) around it."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else name
            if inner != name:
                for ln in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    names[ln] = inner
            visit(child, inner)

    visit(ast.parse(source), "<module>")
    return names


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True, help="the tree the run used (to quote source lines)")
    ap.add_argument("--equivalent", type=Path, required=True)
    ap.add_argument("reports", nargs="*", help="module=report.json ('module=' when the run failed)")
    args = ap.parse_args(argv)
    equivalent = read_equivalent(args.equivalent)
    unexplained = 0
    rows = []
    print("\n=== surviving mutants")
    for item in args.reports:
        module, _, report = item.partition("=")
        if not report:
            rows.append((module, "no report (test run failed)"))
            unexplained += 1
            continue
        data = json.loads(Path(report).read_text())
        text = (args.root / module).read_text()
        lines, funcs = text.splitlines(), enclosing_functions(text)
        survived = [r for r in data["results"] if r["status"] == "survived"]
        listed = 0
        for r in survived:
            src = lines[r["line_number"] - 1].strip() if r["line_number"] <= len(lines) else "?"
            func = funcs.get(r["line_number"], "<module>")
            reason = equivalent.get((f"{module}::{func}", src, r["description"]),
                                    equivalent.get((module, src, r["description"])))
            if reason is None:
                unexplained += 1
                tag = "SURVIVED"
            else:
                listed += 1
                tag = "equivalent"
            print(f"{tag:10s} {module}:{r['line_number']} ({func}): {r['description']} ({r['operator']})  `{src}`")
            if reason:
                print(f"{'':10s}   reason: {reason}")
        s = data["summary"]
        killed = s["zapped"] + s["timeout"]
        rows.append((module, f"{killed}/{s['total']} killed ({s['percentage']:.0f}%), {s['survived']} survived "
                             f"({listed} listed as equivalent), {s['error']} errors"))
    print("\n=== mutation score per module (fast tier)")
    for module, text in rows:
        print(f"{module:32s} {text}")
    print(f"\n{unexplained} survivor(s) neither killed nor listed in {args.equivalent.name}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
