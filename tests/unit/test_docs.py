"""The README and docs/ say what is true: commands that exist, flags their --help names,
links that resolve, a landing page short enough to read, and a layout that is the tree.

A command counts when it is shown, in a code block or an inline code span, as
`projector <sub> ...`, `query-api ...` or `scripts/<name> ...` (also with `./` or
`.venv/bin/` in front). Each flag shown with it must appear in what its `--help` prints:
the argparse parser for `projector` and `query-api`, `scripts/services --help` (the
devservices docstring), `scripts/bench --help` (benchmarks.run), pytest's own `--help`
for `scripts/test` (its arguments go to pytest), and for the other shell scripts their
header comment (they take no flags).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 12_000

PENDING_PAGES: set[str] = set()

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_SEGMENT_BREAK = re.compile(r"&&|\|\||[;|&]|\$\(|\(")
_FLAG = re.compile(r"^-{1,2}[A-Za-z][\w-]*")
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_COMMAND = re.compile(r"^(?:\./|\.venv/bin/)?(projector|query-api|scripts/[\w-]+)$")
_SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Shown:
    """One command as a page shows it."""

    page: str
    command: str  # projector, query-api, scripts/<name>
    words: tuple[str, ...]  # what follows it, flags and values alike

    def __str__(self) -> str:
        return f"{self.page}: {' '.join((self.command, *self.words))}"


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _split_code(text: str) -> tuple[list[str], str]:
    """The shell lines of the fenced blocks, and the text outside any block."""
    lines: list[str] = []
    for match in _FENCE.finditer(text):
        if match.group(1) in _SHELL_LANGUAGES:
            lines.extend(match.group(2).splitlines())
    return lines, _FENCE.sub("", text)


def _snippets(text: str) -> list[str]:
    block_lines, prose = _split_code(text)
    spans = [
        span.replace("\n", " ")
        for paragraph in re.split(r"\n\s*\n", prose)
        for span in _INLINE.findall(paragraph)
    ]
    return block_lines + spans


def _commands_in(snippet: str, page: str) -> list[Shown]:
    snippet = re.sub(r"(^|\s)#.*$", "", snippet)  # a shell comment
    found = []
    for segment in _SEGMENT_BREAK.split(snippet):
        words = [w.strip("\"'") for w in segment.split()]
        while words and _ENV_ASSIGNMENT.match(words[0]):
            words.pop(0)
        if not words:
            continue
        match = _COMMAND.match(words[0])
        if match:
            found.append(Shown(page, match.group(1), tuple(words[1:])))
    return found


def _shown() -> list[Shown]:
    return [
        shown
        for page in _pages()
        for snippet in _snippets(page.read_text(encoding="utf-8"))
        for shown in _commands_in(snippet, _name(page))
    ]


def _flags(words: tuple[str, ...]) -> list[str]:
    flags = []
    for word in words:
        match = _FLAG.match(word.lstrip("["))
        if match:
            flags.append(match.group(0))
    return flags


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _argparse_help(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> str:
    """The --help of the (sub)command the words name: `projector dead-letters list`."""
    for word in words:
        choices = _choices(parser)
        if not choices or word.startswith("-") or word in ("...", "--help"):
            break
        assert word in choices, f"no subcommand {word!r} (has {sorted(choices)})"
        parser = choices[word]
    return parser.format_help()


def _pytest_help(config: pytest.Config) -> str:
    """What `pytest --help` prints, with this suite's own options (conftest) in it."""
    parser = config._parser  # what `--help` formats (pytest 9: .optparser; 8: _getparser())
    optparser = getattr(parser, "optparser", None) or parser._getparser()  # type: ignore[attr-defined]
    return str(optparser.format_help())


def _header_comment(script: Path) -> str:
    lines = script.read_text(encoding="utf-8").splitlines()[1:]
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    return "\n".join(header)


def _help(shown: Shown, config: pytest.Config | None = None) -> str:
    if shown.command == "projector":
        from projector.cli import build_parser

        return _argparse_help(build_parser(), shown.words)
    if shown.command == "query-api":
        from query_api.cli import build_parser as build_api_parser

        return _argparse_help(build_api_parser(), shown.words)
    script = ROOT / shown.command
    assert script.is_file(), f"{shown.command} does not exist"
    if shown.command == "scripts/services":
        from devservices import cli as services

        positional = [w for w in shown.words if not w.startswith("-")]
        if positional:
            assert positional[0] in services.COMMANDS, f"no services command {positional[0]!r}"
        return services.__doc__ or ""
    if shown.command == "scripts/bench":
        from benchmarks.run import build_parser as build_bench_parser

        return build_bench_parser().format_help()
    if shown.command == "scripts/test":
        assert config is not None
        return _pytest_help(config) if _flags(shown.words) else ""
    return _header_comment(script)


def _names_flag(help_text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def test_the_pages_show_commands_and_the_test_finds_them() -> None:
    shown = _shown()
    commands = {s.command for s in shown}
    assert {"projector", "query-api", "scripts/demo", "scripts/test"} <= commands, commands
    assert any(_flags(s.words) for s in shown)


def test_every_command_shown_exists_and_its_help_names_each_flag(
    pytestconfig: pytest.Config,
) -> None:
    wrong = []
    for shown in _shown():
        try:
            help_text = _help(shown, pytestconfig)
        except AssertionError as exc:
            wrong.append(f"{shown}: {exc}")
            continue
        missing = [f for f in _flags(shown.words) if f != "--help"]
        missing = [f for f in missing if not _names_flag(help_text, f)]
        if missing:
            wrong.append(f"{shown}: --help does not name {', '.join(missing)}")
    assert not wrong, "\n".join(wrong)


def test_the_flag_check_can_fail(pytestconfig: pytest.Config) -> None:
    bad = Shown("x.md", "projector", ("rebuild", "--no-such-flag"))
    assert not _names_flag(_help(bad), "--no-such-flag")
    assert _names_flag(_help(bad), "--from-offset")
    with pytest.raises(AssertionError):
        _help(Shown("x.md", "projector", ("no-such-command",)))
    with pytest.raises(AssertionError):
        _help(Shown("x.md", "scripts/no-such-script", ()))
    assert not _names_flag(
        _help(Shown("x.md", "scripts/test", ("--no-such-flag",)), pytestconfig), "--no-such-flag"
    )
    assert _names_flag(_help(Shown("x.md", "scripts/test", ("-m",)), pytestconfig), "--fault-full")
    assert _commands_in('eval "$(scripts/services up --connect)"  # note', "x.md") == [
        Shown("x.md", "scripts/services", ("up", "--connect)"))
    ]


def test_the_readme_is_a_landing_page() -> None:
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters (at most {README_LIMIT})"


def test_the_readme_keeps_the_two_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    for command in ("./scripts/demo", "./scripts/test"):
        assert f"```bash\n{command}\n```" in text, command
    assert "(`.ci/run`) runs exactly this command" in text
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / target.split("#")[0]).resolve()
        for target in _LINK.findall(README.read_text(encoding="utf-8"))
    }
    unlinked = [
        page.name
        for page in sorted(DOCS.glob("*.md"))
        if page.resolve() not in linked and page.name not in PENDING_PAGES
    ]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    _, prose = _split_code(page.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose, re.MULTILINE)}


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in _pages():
        _, prose = _split_code(page.read_text(encoding="utf-8"))
        for target in _LINK.findall(prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                broken.append(f"{_name(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{_name(page)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


_LAYOUT_NAME = re.compile(r"(?<![\w.-])((?:[\w-]+/)*[\w-]+(?:\.[a-z0-9]+|/))(?![\w-])")
_IGNORED_DIRS = {"__pycache__", "build", "dist"}


def _layout() -> dict[str, str]:
    """The architecture page's layout block: top-level directory -> what it says of it."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1) == ""]
    assert blocks, "docs/architecture.md has no layout block"
    sections: dict[str, str] = {}
    current = ""
    for line in blocks[0].splitlines():
        head = re.match(r"^([\w-]+)/\s", line)
        if head:
            current = head.group(1)
            sections[current] = line[head.end() :]
        elif current:
            sections[current] += "\n" + line
    return sections


def test_the_layout_names_every_top_level_directory() -> None:
    on_disk = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in _IGNORED_DIRS
        and not p.name.endswith(".egg-info")
    }
    assert sorted(on_disk - set(_layout())) == []
    assert sorted(set(_layout()) - on_disk) == []


def test_every_file_the_layout_names_exists() -> None:
    missing = []
    for top, says in _layout().items():
        for name in _LAYOUT_NAME.findall(says):
            if name.startswith(f"{top}/") or "." not in name and not name.endswith("/"):
                continue  # another directory's name, e.g. "(scripts/bench)"
            wanted = name.rstrip("/")
            kind = Path.is_dir if name.endswith("/") else Path.is_file
            under_top = (
                p for p in (ROOT / top).rglob(Path(wanted).name) if p.as_posix().endswith(wanted)
            )
            if not kind(ROOT / wanted) and not any(kind(p) for p in under_top):
                missing.append(f"{top}/: {name}")
    assert not missing, f"the layout names what the tree lacks: {missing}"


@pytest.mark.parametrize("package", ["schema", "producer", "projector", "query_api"])
def test_the_layout_names_every_module_of_the_application(package: str) -> None:
    says = _layout()[package]
    named = set(re.findall(r"[\w-]+\.py", says))
    unnamed = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
        and "migrations" not in path.parts
        and path.name not in named
    )
    assert not unnamed, f"docs/architecture.md does not name {unnamed} (add them to its layout)"
