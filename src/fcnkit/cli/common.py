"""What every command's parser shares: the help layout, examples, ``--quiet``.

Command modules import only this, argparse and the standard library at module level:
``fcnkit --help`` builds every parser, and must not import torch to do it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import re
import textwrap


def plain(text: str) -> str:
    """Docstring reST to terminal text: ````code```` and ```code``` lose their backticks."""
    return re.sub(r"``(.+?)``|`(.+?)`", lambda m: m.group(1) or m.group(2), text, flags=re.S)


_SILENT = (None, False, True, argparse.SUPPRESS)  # defaults that go without saying (flags, "none")


class HelpFormatter(argparse.HelpFormatter):
    """Paragraphs re-wrapped to the terminal, indented lines (examples) kept as written,
    reST markup removed, and ``(default: X)`` after every option whose help does not
    already say its default."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for block in re.split(r"\n\s*\n", plain(textwrap.dedent(text)).strip("\n")):
            lines, prose = [], []
            for line in block.splitlines() + [""]:
                if line.startswith(" ") or not line:  # an example, or the end: flush the prose
                    if prose:
                        lines += textwrap.wrap(" ".join(prose), width, initial_indent=indent,
                                               subsequent_indent=indent)
                        prose = []
                    if line:
                        lines.append(indent + line)
                else:
                    prose.append(line.strip())
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain(action.help or "")
        default = action.default
        if (action.option_strings and "default" not in text and not any(default is v for v in _SILENT)
                and default != []):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with ``HelpFormatter``; sub-command parsers are made of this class too."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def examples(*lines: str) -> str:
    """An epilog: ``examples:`` and one command a line (a ``  # comment`` may follow)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q`` / ``--quiet`` / ``--no-progress``: sets ``args.progress = False``."""
    parser.add_argument("-q", "--quiet", "--no-progress", dest="progress", action="store_false",
                        help="no progress bars or progress lines (results and errors are still printed)")


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """One rule for every command: an existing output is never replaced without ``--overwrite``."""
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")


def refuse_existing(*paths: Path | None, overwrite: bool) -> None:
    """ValueError (exit 2) naming the first of ``paths`` that exists, unless ``overwrite``: an
    existing file, or a folder with something in it."""
    if overwrite:
        return
    for path in filter(None, paths):
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            raise ValueError(f"{path}: already exists; add --overwrite to replace it")


def parse_scales(text: str) -> tuple[float, ...]:
    """``--scales 0.75,1,1.25`` (test-time augmentation views)."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be numbers like 0.75,1,1.25, not {text!r}") from None
    if not scales or any(s <= 0 for s in scales):
        raise argparse.ArgumentTypeError(f"scales must be positive, not {text!r}")
    return scales


__all__ = ["HelpFormatter", "Parser", "add_quiet", "examples", "parse_scales", "plain"]
