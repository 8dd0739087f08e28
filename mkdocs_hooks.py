"""MkDocs hooks for the jaxbp site (named in mkdocs.yml; not part of the package).

The pages in docs/ link to the code and tests they describe with relative paths such as
``../jaxbp/layers/dense.py`` — right on GitHub and in an editor, but outside the site's
``docs_dir``, where MkDocs cannot follow them. This hook publishes every repository file that a
page links to under ``_source/`` and points the link there, so the link works on the site too.
A link to a repository file that does not exist is reported as a warning, which ``mkdocs build
--strict`` turns into an error, as it does for a broken link between pages.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.jaxbp")

# A Markdown link or image target: ](target) or ](target "title"); fenced code is left alone.
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<rest>[^)]*)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_PUBLISHED = "_source"


def _outside_targets(page_uri: str, markdown: str, docs: Path, root: Path):
    """Yields (target as written, repository path) of each link leaving docs_dir."""
    for match in _LINK.finditer(_FENCE.sub("", markdown)):
        target = match.group("target")
        if "://" in target or target.startswith(("mailto:", "/")):
            continue
        repo_path = posixpath.normpath(posixpath.join(
            posixpath.dirname(f"{docs.relative_to(root).as_posix()}/{page_uri}"), target))
        if repo_path.startswith("../") or repo_path.startswith(docs.relative_to(root).as_posix()
                                                                 + "/"):
            continue  # inside docs_dir (MkDocs validates it) or outside the repository
        yield target, repo_path


def on_files(files, config):
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    published = set()
    for page in [f for f in files if f.src_uri.endswith(".md")]:
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        for target, repo_path in _outside_targets(page.src_uri, text, docs, root):
            if not (root / repo_path).is_file():
                log.warning("Doc file '%s' links to '%s', which is not a file of the "
                            "repository.", page.src_uri, target)
            elif repo_path not in published:
                published.add(repo_path)
                files.append(File.generated(config, f"{_PUBLISHED}/{repo_path}",
                                            abs_src_path=str(root / repo_path)))
    return files


def on_page_markdown(markdown, page, config, files):
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    moved = {t: posixpath.relpath(f"{_PUBLISHED}/{p}", posixpath.dirname(page.file.src_uri)
                                  or ".")
             for t, p in _outside_targets(page.file.src_uri, markdown, docs, root)
             if (root / p).is_file()}
    if not moved:
        return markdown

    def relink(match: re.Match) -> str:
        target = match.group("target")
        return f"]({moved.get(target, target)}{match.group('rest')})"

    # Rewrite links in the prose only, never inside fenced code.
    pieces, last = [], 0
    for fence in _FENCE.finditer(markdown):
        pieces.append(_LINK.sub(relink, markdown[last:fence.start()]))
        pieces.append(fence.group(0))
        last = fence.end()
    pieces.append(_LINK.sub(relink, markdown[last:]))
    return "".join(pieces)


# ---- griffe: read jaxbp's docstring conventions (mkdocs.yml loads this class as an extension) ---

import griffe  # noqa: E402  (an optional docs dependency; this file runs only under mkdocs)

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Keyword Args|Other Parameters):\s*$")
_COMBINED = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(\s.*|)$")
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|obj|exc|const):`(~?)([^`]+)`")


def _code_span(match: re.Match) -> str:
    """``:func:`~jaxbp.fit``` reads ``fit`` (Sphinx's ``~`` keeps the last part only)."""
    target = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"`{target}`"


def _split_combined(text: str) -> str:
    """``x, y: inputs and targets`` (one entry for several parameters, as jaxbp's docstrings
    write them) becomes one entry per name, so griffe checks each name against the signature."""
    lines, out, i = text.split("\n"), [], 0
    section_indent = None
    while i < len(lines):
        line = lines[i]
        header = _SECTION.match(line)
        if header:
            section_indent = len(header.group(1))
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        if section_indent is not None and line.strip() and indent <= section_indent:
            section_indent = None
        combined = _COMBINED.match(line) if section_indent is not None else None
        if not combined:
            out.append(line)
            i += 1
            continue
        lead, names, annotation, rest = combined.groups()
        body = [rest]
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(lead)):
            body.append("\n" + lines[i])
            i += 1
        for name in (n.strip() for n in names.split(",")):
            out.append(f"{lead}{name}{annotation or ''}:{''.join(body)}")
    return "\n".join(out)


def _comment_docstring(attr) -> str | None:
    """The ``#:`` comment lines right above an assignment (Sphinx's convention for documenting a
    constant), which griffe does not read by itself."""
    try:
        lines = attr.lines_collection[attr.filepath] if attr.lineno else None
    except (KeyError, TypeError):  # an object without source (a compiled module)
        lines = None
    found, i = [], (attr.lineno or 0) - 2
    while lines and i >= 0 and lines[i].lstrip().startswith("#:"):
        found.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return "\n".join(found) or None


class JaxbpDocstrings(griffe.Extension):
    """Sphinx roles (``:func:`fit```) become code spans, combined parameter entries are split,
    and ``#:`` comments document constants, before griffe parses a docstring as Google style."""

    def on_attribute_instance(self, *, node, attr, agent, **kwargs) -> None:
        if attr.docstring is None:
            text = _comment_docstring(attr)
            if text:
                attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _split_combined(_ROLE.sub(_code_span, obj.docstring.value))
