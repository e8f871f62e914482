"""The documentation: the site builds (``mkdocs build --strict``, the REST reference
generated from the OpenAPI document included), every relative link in the README and
the pages reaches a file and, with an anchor, a heading, and the README stays the front
door: what it shows of the CLI, the magics, the REST API and the benchmarks is what the
pages say (which their own tests run)."""

from __future__ import annotations

import html
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import unicodedata

import pytest
from markdown.extensions.toc import slugify as mkdocs_slugify

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: the files a reader follows links in (the README on GitHub, the pages there and on the site)
LINKED = [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


#: where the paths the docs name start: the repository's folders, the package's layers
TOP = ["hermes_cron_ext", "tests", "docs", "scripts", "bench", "deploy", "labextension",
       "notebooks", "jupyter-config", "domain", "store", "events", "runtime", "ops", "server",
       "frontends", "src"]


def _rest_reference():
    spec = importlib.util.spec_from_file_location("rest_reference",
                                                  ROOT / "scripts" / "rest_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """The text without fenced code blocks (their ``#`` lines are not headings and their
    brackets are not links)."""
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)


def _heading_texts(text: str) -> list[str]:
    """Each heading as a reader sees it: code, emphasis and link markup taken away."""
    out = []
    for line in _prose(text).splitlines():
        m = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if m:
            words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
            out.append(words.replace("`", "").replace("**", "").replace("*", ""))
    return out


def _github_slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    kept = "".join(c for c in text.lower()
                   if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def _anchors(text: str) -> tuple[set[str], set[str]]:
    """The anchors of a page's headings: on GitHub, and on the MkDocs site."""
    headings = _heading_texts(text)
    github: set[str] = set()
    for slug in map(_github_slug, headings):
        n, candidate = 0, slug
        while candidate in github:
            n += 1
            candidate = f"{slug}-{n}"
        github.add(candidate)
    return github, {mkdocs_slugify(h, "-") for h in headings}


def _links(text: str) -> list[str]:
    """The targets of markdown links and images outside code."""
    prose = re.sub(r"`[^`\n]*`", "", _prose(text))
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)


def _page_text(path: pathlib.Path) -> str | None:
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path == DOCS / "rest-reference.md":  # generated when the site is built
        module = _rest_reference()
        return module.render(module.load())
    return None


def test_every_relative_link_reaches_a_file_and_its_anchor():
    broken = []
    checked = 0
    for source in LINKED:
        for target in _links(source.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            checked += 1
            where, _, anchor = target.partition("#")
            path = (source.parent / where).resolve() if where else source
            text = _page_text(path) if path.suffix == ".md" or not where else None
            if text is None and not path.exists():
                broken.append(f"{source.relative_to(ROOT)}: {target}: no such file")
                continue
            if anchor:
                if text is None:
                    broken.append(f"{source.relative_to(ROOT)}: {target}: not a page")
                    continue
                github, site = _anchors(text)
                if anchor not in github:
                    broken.append(f"{source.relative_to(ROOT)}: {target}: no heading "
                                  "with that anchor on GitHub")
                if path.is_relative_to(DOCS) and anchor not in site:
                    broken.append(f"{source.relative_to(ROOT)}: {target}: no heading "
                                  "with that anchor on the site")
    assert checked >= 40, checked
    assert not broken, "\n".join(broken)


def test_the_site_builds_strictly_with_the_rest_reference(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    # every page is on the site (strict mode fails on a page left out of the nav too)
    for page in DOCS.glob("*.md"):
        assert (site / page.stem / "index.html").is_file() or page.stem == "index", page
    assert (site / "index.html").is_file() and (site / "panel.png").is_file()
    # the REST reference has every route and method of the document as served
    reference = html.unescape((site / "rest-reference" / "index.html").read_text())
    doc = _rest_reference().load()
    operations = [(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"]
    assert len(operations) >= 25, operations
    for method, path in operations:
        assert f"<code>{method} {path}</code>" in reference, (method, path)
    for name in doc["components"]["schemas"]:
        assert f'id="{name.lower()}"' in reference, name
    # the job bodies come from the options schema when served: they are on the page
    from hermes_cron_ext.domain.options import OPTIONS

    job_input = reference[reference.index('id="jobinput"'):reference.index('id="jobchange"')]
    for option in OPTIONS:
        assert f"<code>{option.name}</code>" in job_input, option.name


def test_the_reference_is_made_from_openapi_json_alone_too():
    """Without the package (the hook falls back to the file), the page still renders."""
    module = _rest_reference()
    doc = json.loads(module.OPENAPI.read_text(encoding="utf-8"))
    page = module.render(doc)
    assert page.startswith("# REST reference\n")
    for path in doc["paths"]:
        assert f" {path}`" in page, path


def _blocks(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks: (language, body)."""
    blocks, lang, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(body)))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def test_the_readme_is_the_front_door():
    text = README.read_text(encoding="utf-8")
    # short: a page of what it is, the set-up, a tour and links, not the manual
    assert len(text.encode()) < 15_000, (
        f"README.md is {len(text.encode())} bytes: chapters belong under docs/")
    assert "](docs/panel.png)" in text
    # the two set-up commands, the first code block
    lang, first = _blocks(text)[0]
    assert lang == "bash" and [line.split()[:2] for line in first.splitlines()] == [
        ["make", "demo"], ["make", "test"]]
    # what it shows of each front is what a page says, word for word (the pages' lines are
    # run by tests/frontends/test_cli_promises.py and friends)
    pages = {name: (DOCS / name).read_text(encoding="utf-8")
             for name in ("cli.md", "notebook.md", "rest.md", "performance.md")}
    shown = {"hermes-cron ": "cli.md", "%cron": "notebook.md", "curl ": "rest.md"}
    found = set()
    for _, block in _blocks(text):
        for line in block.splitlines():
            for prefix, page in shown.items():
                if line.startswith(prefix):
                    found.add(page)
                    assert line in pages[page].splitlines(), (page, line)
    assert found == set(shown.values()), found
    # the headline benchmark tables are the Performance page's, unchanged
    for head in ("| figure | hermes-cron-ext | jupyter-scheduler",
                 "| figure | hermes-cron-ext | APScheduler 3.11"):
        table = text[text.index(head):]
        table = table[:table.index("\n\n")]
        assert table.count("\n") >= 4 and table in pages["performance.md"], head


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md", "CHANGELOG.md",
                                  *sorted(p.name for p in DOCS.glob("*.md"))])
def test_no_reference_to_what_is_not_here(name):
    """Files, tests and documents named in the docs exist; issues are said by what they
    were, not by a number a reader of the repository cannot follow."""
    path = ROOT / name if (ROOT / name).exists() else DOCS / name
    text = path.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text and "DESIGN," not in text
    if name != "CHANGELOG.md":
        assert not re.search(r"\bissues? #?\d+", text, flags=re.I), name
    missing = []
    for code in re.findall(r"`([^`\s]+)`", text):
        # a path in the repository (from its root, or the package's layer folders)
        if not re.fullmatch(rf"({'|'.join(TOP)})(/[\w.-]+)*(/|\.(py|md|json|ts|ipynb|sh"
                            r"|service|timer|png))", code):
            continue
        where = [ROOT, ROOT / "hermes_cron_ext", ROOT / "labextension"]
        if not any((base / code).exists() for base in where):
            missing.append(code)
    assert not missing, f"{name} names paths that are not in the repository: {missing}"
