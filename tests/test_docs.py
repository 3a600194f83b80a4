"""The docs stand alone: every relative link in README.md, the Python client's README and
docs/*.md names a file of the repository (and a heading of it, when it has an anchor), and none
leaves the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "clients" / "python" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def links(doc: Path) -> list[str]:
    """Markdown link targets of ``doc`` (inline links and images), code blocks left out."""
    text = FENCE.sub("", doc.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code: `[x](y)` there is not a link
    return [a or b for a, b in LINK.findall(text)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", doc.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def test_the_docs_exist_and_have_links() -> None:
    assert (ROOT / "docs" / "api.md").is_file() and (ROOT / "docs" / "README.md").is_file()
    assert sum(len(links(d)) for d in DOCS) > 20, "the link parser finds the links"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    problems = []
    for target in filter(relative, links(doc)):
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.is_relative_to(ROOT):
            problems.append(f"{target}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not problems, f"{doc.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_link_checks_catch_what_they_claim(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("# Top\n\n[a](#top) [b](y.md#top-1) ![c](img.png) `[d](nowhere)`\n```\n[e](f)\n```\n")
    assert links(doc) == ["#top", "y.md#top-1", "img.png"]
    assert anchors(doc) == {"top"}
    assert slug("The delivery on the wire") == "the-delivery-on-the-wire"
    assert slug("Health, metrics and console") == "health-metrics-and-console"
    assert slug("`appendfsync`: what each policy survives") == "appendfsync-what-each-policy-survives"
    assert not relative("https://www.standardwebhooks.com/") and relative("../shared/CONTRACT.md")


def test_the_openapi_description_points_at_the_reference_in_the_repository() -> None:
    from api.app import create_app
    from tests.conftest import api_config

    description = create_app(api_config("redis://127.0.0.1:1/0")).app.description
    assert "docs/api.md" in description and "CONTRACT" not in description
    assert (ROOT / "docs" / "api.md").is_file()
