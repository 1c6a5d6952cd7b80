"""Render every results file of the benchmarks (``benchmarks/results/*.json``) as Markdown
tables into docs/benchmarks.md, between the markers of its "Results files" section, so that
every measured table in the docs comes from a results file (``python benchmarks/tables.py``;
``--check`` exits 1 when the page is out of date, as tests/test_docs.py checks).

Each table names its file, the machine the numbers came from, and the command and options
stored with it, then any other top-level figure of the file (a peak measured in the same run,
peers' notes); rows are the file's ``rows`` (or ``cases``), numbers to four significant digits.
Link to one file's table from another page as ``benchmarks.md#resultsNAMEjson`` (the heading's
anchor: ``results/mps_simulate.json`` gives ``#resultsmps_simulatejson``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAGE = HERE.parent / "docs" / "benchmarks.md"
SHOWN = ("machine", "command", "commit", "options")
BEGIN, END = "<!-- results: begin (benchmarks/tables.py) -->", "<!-- results: end -->"


def cell(value) -> str:
    """A table cell: floats to four significant digits, lists joined, None as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value)
    return str(value).replace("|", "\\|")


def render(path: Path) -> str:
    """One results file as a Markdown section: heading, provenance, table."""
    report = json.loads(path.read_text())
    rows = report.get("rows") or report.get("cases") or []
    machine = report.get("machine", {})
    where = (f"{machine.get('cpus', '?')} CPUs, {machine.get('threads', '?')} torch threads, "
             f"torch {machine.get('torch', '?')}, load average "
             f"{cell([round(x, 1) for x in machine.get('load_average', [])])}"
             + (f", GPU {machine['gpu']}" if "gpu" in machine else ""))
    lines = [f"### `results/{path.name}`", "", f"Machine: {where}."]
    for key in ("command", "commit", "options"):
        if key in report:
            lines.append(f"{key.capitalize()}: `{json.dumps(report[key])}`.")
    for key, value in report.items():  # the file's other figures (a measured peak, peers' notes)
        if key in (*SHOWN, "rows", "cases"):
            continue
        if isinstance(value, dict):
            lines += [f"{key}:", ""] + [f"- {name}: {cell(item)}" for name, item in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += ["", f"{key}:", *table(value)]  # a summary of the rows (the winners)
        else:
            lines.append(f"{key}: {cell(value)}.")
    return "\n".join([*lines, "", *table(rows)]) + "\n"


def table(rows: list[dict]) -> list[str]:
    """Markdown table lines of ``rows``, one column per key in order of appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows])


def rendered_page(page: str) -> str:
    """``page`` with the text between the markers replaced by every results file's table."""
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    sections = [render(path) for path in sorted(RESULTS.glob("*.json"))
                if not path.stem.endswith("_quick")]
    return head + BEGIN + "\n\n" + "\n".join(sections) + "\n" + END + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/benchmarks.md is not what the results give")
    args = parser.parse_args()
    page = PAGE.read_text()
    if BEGIN not in page or END not in page:
        print(f"{PAGE}: the markers {BEGIN} … {END} are missing", file=sys.stderr)
        return 1
    new = rendered_page(page)
    if args.check:
        return 0 if new == page else 1
    PAGE.write_text(new)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
