#!/usr/bin/env python3
# Merge aid for issue 15 (the README split): delete this file once the other branches' README edits are ported.
"""Port another branch's edits of the old README.md onto the docs/ pages that now hold its sections.

    python port_readme.py BASE BRANCH [--apply]      (run in a checkout of the docs branch)

BASE is the commit the other branch edited the README from (e.g. main / adad35e), BRANCH the
other branch. Each changed region of README.md (difflib, BASE -> BRANCH) is located in docs/*.md
by its old lines plus up to 3 lines of context on each side, comparing heading lines without their
'#'s (the move shifted heading levels). A region must match exactly one place; its new lines then
replace the old ones, new heading lines shifted like the page's. Without --apply: dry run.
Regions in the part of the README that stayed (the quick start) or that match nowhere / twice are
reported for porting by hand.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

HEADING = re.compile(r"^(#{1,6}) ")


def norm(line: str) -> str:
    return HEADING.sub("# ", line)


def git_show(ref: str, path: str) -> list[str]:
    if Path(ref).is_file():  # a file instead of a commit (for trying the tool)
        return Path(ref).read_text().split("\n")
    out = subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=True).stdout
    return out.split("\n")


def find(pages: dict[Path, list[str]], seq: list[str]) -> list[tuple[Path, int]]:
    want = [norm(x) for x in seq]
    hits = []
    for path, lines in pages.items():
        n = [norm(x) for x in lines]
        for i in range(len(n) - len(want) + 1):
            if n[i : i + len(want)] == want:
                hits.append((path, i))
    return hits


def heading_shift(page: list[str], at: int, old: list[str], old_at: int) -> int:
    """How many '#'s the page has removed from the headings near this place."""
    for k in range(at - 1, -1, -1):
        m = HEADING.match(page[k])
        if m:
            text = norm(page[k])
            for j in range(old_at - 1, -1, -1):
                mo = HEADING.match(old[j])
                if mo and norm(old[j]) == text:
                    return len(mo.group(1)) - len(m.group(1))
            return 0
    return 0


def main() -> int:
    base, branch = sys.argv[1], sys.argv[2]
    apply = "--apply" in sys.argv
    old, new = git_show(base, "README.md"), git_show(branch, "README.md")
    pages = {p: p.read_text().split("\n") for p in sorted(Path("docs").glob("*.md"))}
    ops = [op for op in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes() if op[0] != "equal"]
    todo = []
    for tag, i1, i2, j1, j2 in reversed(ops):  # bottom-up: the contexts above stay as in BASE
        located = None
        for k in (3, 2, 1, 0):
            for before, after in ((k, k), (k, 0), (0, k)):
                if before == after == 0 and i1 == i2:
                    continue  # a bare insertion needs some context
                seq = old[max(0, i1 - before) : i2 + after]
                hits = find(pages, seq)
                if len(hits) == 1:
                    path, at = hits[0]
                    located = (path, at + min(before, i1))
                    break
            if located:
                break
        where = f"README {i1 + 1}-{i2} ({tag}, +{j2 - j1} -{i2 - i1})"
        if not located:
            todo.append(f"{where}: not found in docs/ (or ambiguous): port by hand")
            continue
        path, at = located
        page = pages[path]
        shift = heading_shift(page, at, old, i1)
        repl = [HEADING.sub(lambda m, s=shift: "#" * max(1, len(m.group(1)) - s) + " ", x) for x in new[j1:j2]]
        page[at : at + (i2 - i1)] = repl
        print(f"{where} -> {path}:{at + 1}")
    for line in todo:
        print(line)
    if apply:
        for path, lines in pages.items():
            path.write_text("\n".join(lines))
    return 1 if todo else 0


if __name__ == "__main__":
    sys.exit(main())
