"""Every relative link in the repository's markdown resolves: the file exists, and an ``#anchor`` into a markdown
file names one of its headings (GitHub's slugs). Docs are moved and split often; a dead link is found here
instead of by a reader. Links inside code (fenced blocks, inline code) are text, not links, and are skipped."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"build", "node_modules", "__pycache__", "site-packages"}  # at any depth
SKIP_TOP = {"runs", "results"}  # outputs of training and benchmarks, at the repository root
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files(root: Path = REPO) -> list[Path]:
    """The markdown files of the repository: hidden folders, virtual environments and build outputs excluded;
    under engines/ only its README (the rest are generated engine directories)."""
    out = []
    for path in root.rglob("*.md"):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in rel[:-1]) or (len(rel) > 1 and rel[0] in SKIP_TOP):
            continue
        if rel[0] == "engines" and len(rel) > 2:
            continue
        out.append(path)
    return sorted(out)


def _prose_lines(text: str) -> list[str]:
    """Lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`+[^`]*`+", "``", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: links reduced to their text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a markdown file defines: its headings' slugs (``-1``, ``-2`` for repeats) and explicit ids."""
    seen: dict[str, int] = {}
    out = set()
    text = path.read_text(encoding="utf-8")
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    out.update(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    return out


def dead_links(path: Path) -> list[str]:
    """``'FILE:LINE: TARGET (why)'`` for every relative link of ``path`` that does not resolve."""
    bad = []
    for lineno, line in enumerate(_prose_lines(path.read_text(encoding="utf-8")), 1):
        for target in LINK.findall(line) + HTML_LINK.findall(line):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto: ... are not checked here (no network in CI)
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{lineno}: {target}"
            if not dest.exists():
                bad.append(f"{where} (no such file)")
            elif not dest.is_relative_to(REPO):
                bad.append(f"{where} (points outside the repository)")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                bad.append(f"{where} (no heading with this anchor in {dest.name})")
    return bad


def test_every_relative_link_resolves():
    files = markdown_files()
    assert {REPO / "README.md", REPO / "docs" / "design.md", REPO / "docs" / "results" / "README.md"} <= set(files)
    bad = [b for f in files for b in dead_links(f)]
    assert not bad, "dead relative links:\n" + "\n".join(bad)


def test_checker_finds_dead_links(tmp_path, monkeypatch):
    """The checker itself: a missing file, a missing anchor and a link out of the repository are reported; code,
    URLs and good links are not."""
    repo = tmp_path / "repo"
    monkeypatch.setattr(sys.modules[__name__], "REPO", repo)
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# Title\n\n## 3. KV cache layout\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    page = repo / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#3-kv-cache-layout) [ok](#own) ![ok](docs/a.md) [web](https://x.org/y)\n"
        "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n# Own\n"
        "[dead](docs/missing.md) [anchor](docs/a.md#nope) [out](../outside.md)\n")
    bad = dead_links(page)
    assert [b.split(": ", 1)[1] for b in bad] == [
        "docs/missing.md (no such file)", "docs/a.md#nope (no heading with this anchor in a.md)",
        "../outside.md (points outside the repository)"], bad


def test_readme_lists_every_command_once(benchmark_script):
    """README's command table has one row per registered command, each linking to its docs/cli.md entry: a command
    added, renamed or removed shows up here."""
    import argparse

    from earn_export.cli import build_parser
    anchor = benchmark_script("cli_reference", "tools").anchor

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    rows = re.findall(r"^\| \[`([a-z-]+)`\]\(docs/cli\.md#([a-z-]+)\) \|", (REPO / "README.md").read_text(), re.M)
    assert sorted(name for name, _ in rows) == sorted(sub.choices), "README's command table != registered commands"
    assert all(target == anchor(name) for name, target in rows), rows
