"""The repository documents itself: every `*.md` a file cites is in the repository, and no
comment names a person or a role (docs/architecture.md is the contract)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".sql", ".yml", ".yaml", ".toml", ".md", ".cfg", ".txt", ".graphql"}
CODE_SUFFIXES = TEXT_SUFFIXES - {".md"}
# A file name ending in .md, optionally with a folder path before it.
MD_REFERENCE = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)?[\w./-]*\w\.md)\b(?!\()")  # not `.md(`
# Authorship by role or letter ("dbt engineer B", "a data engineer"): comments say why, not who.
ROLE = re.compile(r"\bengineers?\b", re.IGNORECASE)


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    paths = [ROOT / name.decode() for name in listed if name]
    return [
        p
        for p in paths
        if (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")
        and p.is_file()
        and p != Path(__file__).resolve()  # this file spells out what it looks for
    ]


def unresolved_md_references(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """`*.md` names in `text` that are neither relative to `path`'s folder nor to `root`."""
    missing = []
    for match in MD_REFERENCE.finditer(text):
        name = match.group(1)
        if not ((path.parent / name).is_file() or (root / name).is_file()):
            missing.append(name)
    return missing


def test_every_cited_markdown_file_is_in_the_repository() -> None:
    problems = {}
    for path in tracked_files():
        missing = unresolved_md_references(path, path.read_text(errors="replace"))
        if missing:
            problems[path.relative_to(ROOT).as_posix()] = sorted(set(missing))
    assert problems == {}


def test_no_code_or_comment_names_a_role() -> None:
    hits = [
        f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}"
        for path in tracked_files()
        if path.suffix in CODE_SUFFIXES or path.name == "Makefile"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if ROLE.search(line)
    ]
    assert hits == []


def test_the_reference_check_sees_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "feeds.md").write_text("")
    cited = tmp_path / "docs" / "a.py"
    text = '"""See DESIGN.md "x", docs/feeds.md, feeds.md and ../shared/STYLE.md."""'
    assert unresolved_md_references(cited, text, root=tmp_path) == [
        "DESIGN.md",
        "../shared/STYLE.md",
    ]
