"""The documentation: every link leads somewhere, every command in a ``bash`` block parses with the parser of the
command it names (ours, or the stock nnU-Net command's own argparse parser), and every Python snippet runs.

What each command does is tested where its subcommand or trainer is; here a renamed flag, a dropped choice or a
misspelt trainer option in a page fails the suite.
"""

from __future__ import annotations

import argparse
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from nnunet_attention.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "datasets.md", *(ROOT / "documentation").glob("*.md"),
                *(ROOT / "examples").glob("*/README.md")])
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEREDOC = re.compile(r"<<'?(\w+)'?\n(.*?)\n\1\n", re.DOTALL)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def fenced_blocks(page: Path, language: str) -> list[str]:
    """The ``language`` code blocks of ``page``, indentation removed."""
    blocks = []
    for indent, block_language, body in FENCE.findall(page.read_text()):
        if block_language == language:
            blocks.append("\n".join(line.removeprefix(indent) for line in body.splitlines()) + "\n")
    return blocks


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of ``page``'s headings: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page_id(page)} links to {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{page_id(page)} links to {target}: no such heading"


def shell_commands(script: str) -> list[list[str]]:
    """The commands of a bash block as argument lists: here-documents and comments dropped, continued lines
    joined, split at ``&&``, ``;`` and ``|``, environment assignments and ``do``/``then`` taken off the front."""
    script = re.sub(r"<[^>\n]+>", "X", HEREDOC.sub("\n", script).replace("\\\n", " "))
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = []
        for word in [*lexer, ";"]:
            if word not in (";", "&&", "||", "|", "&"):
                words.append(word)
                continue
            while words and (re.fullmatch(r"\w+=.*", words[0]) or words[0] in ("do", "then")):
                words = words[1:]
            if words:
                commands.append(words)
            words = []
    return commands


class _ParserCaptured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def nnunet_parser(command: str, monkeypatch) -> argparse.ArgumentParser:
    """The argparse parser nnU-Net's console script ``command`` builds: its entry function runs until it parses."""
    (script,) = entry_points(group="console_scripts", name=command)

    def capture(parser, *args, **kwargs):
        raise _ParserCaptured(parser)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        with pytest.raises(_ParserCaptured) as captured:
            script.load()()
    return captured.value.parser


def documented_commands() -> list[tuple[str, list[str]]]:
    return [(page_id(page), words) for page in PAGES for block in fenced_blocks(page, "bash")
            for words in shell_commands(block) if words[0] == "nnunet-attention" or words[0].startswith("nnUNetv2_")]


def test_the_pages_hold_the_commands_a_user_runs():
    """Every subcommand has an example to run, and the extraction finds them (a broken pattern would make the parse
    test below check nothing)."""
    commands = documented_commands()
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert {words[1] for _, words in commands if words[0] == "nnunet-attention"} == set(subcommands)
    assert {words[0] for _, words in commands} >= {"nnUNetv2_train", "nnUNetv2_predict", "nnUNetv2_plan_and_preprocess"}


def test_every_documented_command_parses(monkeypatch):
    parsers = {"nnunet-attention": build_parser()}
    failures = []
    for page, words in documented_commands():
        if words[0] not in parsers:
            parsers[words[0]] = nnunet_parser(words[0], monkeypatch)
        try:
            parsers[words[0]].parse_args(words[1:])
        except SystemExit:
            failures.append(f"{page}: {shlex.join(words)}")
    assert not failures, "commands their parser refuses:\n" + "\n".join(failures)


@pytest.mark.parametrize("page", [page for page in PAGES if fenced_blocks(page, "python")
                                  or any(HEREDOC.search(block) for block in fenced_blocks(page, "bash"))],
                         ids=page_id)
def test_every_python_snippet_runs(page, tmp_path, monkeypatch):
    """Python blocks and ``python - <<'PY'`` here-documents, each in a fresh namespace in an empty folder."""
    monkeypatch.chdir(tmp_path)
    snippets = fenced_blocks(page, "python") + [body for block in fenced_blocks(page, "bash")
                                                for _, body in HEREDOC.findall(block)]
    for snippet in snippets:
        exec(compile(snippet, f"{page_id(page)} snippet", "exec"), {"__name__": "documentation_snippet"})
