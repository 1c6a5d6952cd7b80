"""Every ``qtomo`` command line in the README and docs/ names a subcommand and options that the
command-line parser has (so the guide cannot drift from the CLI)."""
import re
import shlex
from pathlib import Path

import pytest

from qtomo.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`(qtomo [^`]+)`")


def command_lines(text: str) -> list[str]:
    """The ``qtomo …`` command lines of a Markdown page: the lines of its fenced blocks (with
    backslash continuations joined) and its inline code spans."""
    found = []
    for block in _FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("qtomo "):
                found.append(line)
    found += _INLINE.findall(_FENCE.sub("", text))
    return found


def _subcommand_options() -> dict[str, set[str]]:
    parser = build_parser()
    choices = next(action.choices for action in parser._actions
                   if isinstance(action, type(parser._subparsers._group_actions[0])))
    return {name: set(sub._option_string_actions) for name, sub in choices.items()}


OPTIONS = _subcommand_options()
DOCUMENTED = sorted({(page.relative_to(ROOT).as_posix(), line)
                     for page in PAGES for line in command_lines(page.read_text())})


def test_the_docs_name_commands():
    assert len(DOCUMENTED) > 30
    assert {shlex.split(line)[1] for _, line in DOCUMENTED} >= set(COMMANDS)


@pytest.mark.parametrize(("page", "line"), DOCUMENTED)
def test_documented_command_exists(page, line):
    words = shlex.split(line.replace("…", ""), comments=True)
    if words[1].startswith("-"):
        assert words[1] in ("--help", "--version"), f"{page}: {line}"
        return
    # an upper-case placeholder (`qtomo SUBCOMMAND --help`) stands for every subcommand
    named = list(COMMANDS) if words[1].isupper() else [words[1]]
    for command in named:
        assert command in COMMANDS, f"{page}: unknown subcommand in {line!r}"
        unknown = [word for word in words[2:] if word.startswith("--")
                   and word.split("=")[0] not in OPTIONS[command]]
        assert not unknown, f"{page}: {line!r} names options {unknown} that `qtomo {command}` lacks"


def test_benchmark_tables_are_rendered_from_the_results_files():
    """docs/benchmarks.md's "Results files" section is what benchmarks/tables.py makes of the
    results files (run it after a benchmark)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert tables.BEGIN in page and list((ROOT / "benchmarks" / "results").glob("*.json"))
    assert tables.rendered_page(page) == page, "run python benchmarks/tables.py"


def test_cli_pipeline_names_its_results_file_after_the_fit_options(monkeypatch):
    """The results files the docs link (``cli_pipeline_tfim100_chi4_real0.json``) are named by
    ``results_name``: each ``--flag`` with its values, a valueless flag on its own."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    cli_pipeline = importlib.import_module("cli_pipeline")
    assert cli_pipeline.results_name("tfim100", "") == "cli_pipeline_tfim100"
    assert (cli_pipeline.results_name("tfim100", "--chi 4 --real 0")
            == "cli_pipeline_tfim100_chi4_real0")
    assert (cli_pipeline.results_name("tfim100", "--no-amp --chi 4")
            == "cli_pipeline_tfim100_no-amp_chi4")


def test_limit_names_its_results_file_and_command_after_its_options(monkeypatch):
    """``benchmarks/limit.py`` writes ``limit_<cases>[_bootstrapM][_noreference][_sizes…]`` and
    stores the command that rewrites it, options spelled as on the command line."""
    import argparse
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    limit = importlib.import_module("limit")
    default = ["tfim8", "tfim10", "ghz20", "tfim6_noisy", "tfim50"]
    args = argparse.Namespace(cases=["tfim8"], seed=1, bootstrap=0, reference=True,
                              reference_sizes=[3, 4])
    assert limit.results_name(args, default) == "limit_tfim8_sizes3_4"
    assert (limit.command_line(args)
            == "python benchmarks/limit.py --cases tfim8 --seed 1 --bootstrap 0 "
               "--reference-sizes 3 4")
    plain = argparse.Namespace(cases=default, seed=1, bootstrap=3, reference=False,
                               reference_sizes=[])
    assert limit.results_name(plain, default) == "limit_bootstrap3_noreference"
    assert limit.command_line(plain).endswith("--seed 1 --bootstrap 3 --no-reference")
