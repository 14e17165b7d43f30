"""The project's docs stand on their own and follow the code.

- docs/api.md names every HTTP route the hub serves (its OpenAPI spec, and the routes
  outside it such as provider callbacks) and every ``rop`` command with its arguments and
  options, and every ``ROP_*`` environment variable the code reads; it names no route or
  command that does not exist.
- Every ``rop`` command that README.md, docs/*.md or bench/*.md shows in code exists, with the
  options it is shown with; every ``ROP_*`` variable the guides (README, getting-started,
  operations) name is in docs/api.md's environment table.
- No file of the repository points at documents outside it (users have only the project).
- Every relative link of README.md, docs/*.md and bench/*.md reaches a file of the repository, and a
  heading of it when the link has an anchor.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pytest

from hub.cli import main_group  # importing hub.cli adds every service's commands

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _api_doc() -> str:
    return API_DOC.read_text(encoding="utf-8")


# -- HTTP routes -----------------------------------------------------------------------------
def _served_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) of the OpenAPI spec the app serves, plus the app's other routes
    (callbacks, /docs, /openapi.json) except the admin UI and static files."""
    spec = app.test_client().get("/openapi.json").get_json()
    routes = {(method.upper(), path) for path, operations in spec["paths"].items()
              for method in operations if method.upper() in HTTP_METHODS}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/admin", "/static")) or "<path:" in rule.rule:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes.update((method, path) for method in rule.methods or () if method in HTTP_METHODS)
    return routes


def test_every_served_route_is_in_the_api_reference(app):
    doc = _api_doc()
    routes = _served_routes(app)
    assert ("POST", "/v1/transactions") in routes and ("POST", "/callbacks/{provider_code}/{config_id}") in routes
    missing = sorted(f"{method} {path}" for method, path in routes if f"`{method} {path}`" not in doc)
    assert not missing, f"docs/api.md does not document: {missing}"


def test_the_api_reference_names_no_route_that_does_not_exist(app):
    routes = _served_routes(app)
    named = set(re.findall(rf"`({'|'.join(HTTP_METHODS)}) (/[^`?\s]*)", _api_doc()))
    assert named, "docs/api.md names no route"
    unknown = sorted(f"{method} {path}" for method, path in named if (method, path) not in routes)
    assert not unknown, f"docs/api.md documents routes the hub does not serve: {unknown}"


# -- the command line ------------------------------------------------------------------------
def _leaf_commands(group: click.Group, prefix: str = "rop") -> list[tuple[str, click.Command]]:
    """``("rop wallets topup", command)`` for every command that is not a group."""
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(_leaf_commands(command, path))
        else:
            found.append((path, command))
    return found


def _lines_naming(doc: str, path: str) -> list[str]:
    """The lines of ``doc`` where the command ``path`` appears in code (`` `rop bulk status …``)."""
    pattern = re.compile(re.escape("`" + path) + r"(?=[` ])")
    return [line for line in doc.splitlines() if pattern.search(line)]


def test_every_cli_command_is_in_the_api_reference_with_its_arguments_and_options():
    doc = _api_doc()
    commands = _leaf_commands(main_group)
    assert {"rop wallets topup", "rop bulk submit", "rop up"} <= {path for path, _ in commands}
    problems = []
    for path, command in commands:
        lines = _lines_naming(doc, path)
        if not lines:
            problems.append(f"{path}: not documented")
            continue
        text = "\n".join(lines)
        for param in command.params:
            if isinstance(param, click.Argument):
                name = param.name.upper()
                if name not in text:
                    problems.append(f"{path}: argument {name} not documented")
            else:
                option = max(param.opts, key=len)
                if option != "--help" and f"`{option}`" not in text:
                    problems.append(f"{path}: option {option} not documented")
    assert not problems, "docs/api.md and the CLI differ:\n" + "\n".join(problems)


def _resolve(words: list[str]) -> tuple[click.Command, str, list[str], str | None]:
    """Walk ``rop``'s command tree along ``words``: the command reached, its path, the words
    left after a leaf command (its arguments), and the first word that is no command (or None)."""
    command: click.Command = main_group
    path = "rop"
    for index, word in enumerate(words):
        if not isinstance(command, click.Group):
            return command, path, words[index:], None
        sub = command.commands.get(word)
        if sub is None:
            return command, path, words[index:], word
        command, path = sub, f"{path} {word}"
    return command, path, [], None


def test_the_api_reference_names_no_command_that_does_not_exist():
    unknown = [f"rop {words}" for words in re.findall(r"`rop ([a-z][a-z-]*(?: [a-z][a-z-]*)*)", _api_doc())
               if _resolve(words.split())[3] is not None]
    assert not unknown, f"docs/api.md names commands that do not exist: {sorted(set(unknown))}"


# -- the environment -------------------------------------------------------------------------
def test_every_environment_variable_the_code_reads_is_in_the_api_reference():
    read = set()
    pattern = re.compile(r"""(?:environ|env)(?:\.get\(|\[)\s*["'](ROP_[A-Z_]+)["']""")
    for package in ("hub", "admin", "plugins"):
        for source in (ROOT / package).rglob("*.py"):
            read.update(pattern.findall(source.read_text(encoding="utf-8")))
    assert {"ROP_DATABASE_URL", "ROP_PUBLIC_URL", "ROP_REDIS_SERVER"} <= read
    doc = _api_doc()
    missing = sorted(name for name in read if f"| `{name}` |" not in doc)
    assert not missing, f"docs/api.md's environment table lacks: {missing}"


# -- nothing outside the repository ------------------------------------------------------------
#: Documents that exist outside the repository; its files must not point at them. (Spelled
#: so that this file does not name them itself.)
_OUTSIDE_NAMES = ("API", "DOMAIN", "STACK", "DESIGN", "STYLE")
OUTSIDE = re.compile(rf"\.\./shared|/work/share[d]|\b(?:{'|'.join(_OUTSIDE_NAMES)})\.md\b")
TEXT_SUFFIXES = {".py", ".md", ".html", ".cfg", ".toml", ".ini", ".txt", ".js", ".css", ".yml",
                 ".yaml", ".json", ".sh", ".mako", ".rst", ""}


def _repository_files() -> list[Path]:
    """The files git tracks; without git, every file outside hidden, build and venv folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {"build", "instance", "test-artifacts", "node_modules"}
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip and not d.endswith(".egg-info")]
            files.extend(Path(folder) / name for name in names)
        return files


def test_no_file_points_at_documents_outside_the_repository():
    offenders = []
    for path in _repository_files():
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offenders, "files point at documents outside the repository:\n" + "\n".join(offenders)


# -- links ---------------------------------------------------------------------------------------
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a page's headings (lower case, punctuation dropped,
    spaces as hyphens, ``-1``, ``-2`` … for repeats)."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]


@pytest.mark.parametrize("page", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_heading(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists() or ROOT not in linked.parents:
            broken.append(f"{target}: no such file in the repository")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: {linked.name} has no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"


# -- every page: the commands and variables it names exist ----------------------------------------
INLINE_CODE = re.compile(r"`([^`\n]+)`")
ROP_COMMAND = re.compile(r"(?<![\w.-])rop ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)*)((?: +[^\s|;&#`]+)*)")


def _code_of(markdown: str) -> list[str]:
    """The code of a page, one line each: every line of its fenced blocks (continuation lines
    joined) and every inline code span of the rest."""
    lines = []
    for block in FENCE.finditer(markdown):
        lines.extend(block.group(0).replace("\\\n", " ").splitlines()[1:-1])
    lines.extend(INLINE_CODE.findall(FENCE.sub("", markdown)))
    return lines


def _command_problems(line: str) -> list[str]:
    problems = []
    for match in ROP_COMMAND.finditer(line):
        command, path, rest, unknown = _resolve(match.group(1).split())
        if unknown is not None:
            problems.append(f"{path} {unknown}: no such command ({line.strip()[:100]})")
            continue
        if isinstance(command, click.Group):
            continue
        options = {opt for param in command.params for opt in param.opts} | {"--help"}
        for token in [*rest, *match.group(2).split()]:
            if token.startswith("-") and token != "-" and token.split("=", 1)[0] not in options:
                problems.append(f"{path}: no option {token} ({line.strip()[:100]})")
    return problems


@pytest.mark.parametrize("page", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rop_command_a_page_shows_exists_with_its_options(page):
    problems = [p for line in _code_of(page.read_text(encoding="utf-8")) for p in _command_problems(line)]
    assert not problems, f"{page.relative_to(ROOT)} shows commands the CLI does not have:\n" + "\n".join(problems)


def test_the_command_check_sees_what_it_must():
    assert _command_problems("rop wallets topup 100 --tenant demo --reason x") == []
    assert _command_problems(".venv/bin/rop bulk submit rows.csv --tenant demo --follow | tail") == []
    assert _command_problems("rop wallets top-up 100") and _command_problems("rop bulk submit f --folow")
    assert _code_of("a `rop up` b\n```sh\nrop clients create \\\n  --platform\n```\n") == [
        "rop clients create    --platform", "rop up"]


#: The pages a newcomer and an operator follow step by step: every variable they name is one the
#: reference lists. (Other pages also name Flask settings of the admin UI and a plugin's CI variable.)
GUIDES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md", ROOT / "docs" / "operations.md"]


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_environment_variable_a_guide_names_is_in_the_api_reference(page):
    table = set(re.findall(r"^\| `(ROP_[A-Z_]+)` \|", _api_doc(), re.MULTILINE))
    test_only = {"ROP_TEST_DATABASE_URL", "ROP_TEST_REQUIRE_POSTGRES"}  # the suite's, described under the table
    named = set(re.findall(r"\bROP_[A-Z][A-Z_]*[A-Z]\b", page.read_text(encoding="utf-8")))
    unknown = sorted(named - table - test_only)
    assert not unknown, f"{page.relative_to(ROOT)} names variables docs/api.md does not list: {unknown}"
