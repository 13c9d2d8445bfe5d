"""The argument parser of the command lines (``ollama-async`` and its ``serve-sim``): one line on error.

argparse prints its whole usage block before the error; for a command with many flags that
buries the one line that matters. Here a usage error is that line alone, with a pointer to
``--help``, and exit status 2 as argparse has it. Standard library only: the simulator's command
line uses it too.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["ArgumentParser"]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line: ``PROG: error: ... (see PROG --help)``.

    Subcommand parsers made with ``add_subparsers()`` are of this class too (argparse makes them
    with the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
