"""What the code cites exists: every `docs/<...>.md` a source, recipe or doc names is in the repo, and
every `docs/ALGORITHMS.md §N` it cites is a section of that file."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"\bdocs/([\w/.-]+?\.md)")
SECTION = re.compile(r"docs/ALGORITHMS\.md[^\n§]{0,3}§(\d)")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py", "*.yaml", "*.md", "*.sh"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).is_file()]


def test_every_cited_doc_exists():
    missing = {(p.relative_to(ROOT).as_posix(), m) for p in _tracked()
               for m in CITE.findall(p.read_text(errors="replace")) if not (ROOT / "docs" / m).is_file()}
    assert not missing, sorted(missing)


def test_every_cited_algorithms_section_exists():
    sections = set(re.findall(r"^## §(\d)", (ROOT / "docs" / "ALGORITHMS.md").read_text(), re.M))
    assert sections == {str(i) for i in range(7)}
    cited = {(p.relative_to(ROOT).as_posix(), n) for p in _tracked()
             for n in SECTION.findall(p.read_text(errors="replace"))}
    assert cited and all(n in sections for _, n in cited), sorted(cited)
