"""The ``abstractvision`` command line: every task from the shell.

``main(argv)`` parses the arguments, runs one command and returns its exit code (see
``docs/cli.md``: 0 ok, 1 generation/backend error, 2 usage or invalid input, 3 missing
optional dependency, 130 cancelled, 141 broken pipe). Importing this package and printing
``--help`` load only the standard library: each command imports its heavy dependencies
(torch, diffusers, Pillow, httpx) when it runs.
"""

from __future__ import annotations

from .app import EXIT_CODES, main

__all__ = ["EXIT_CODES", "main"]
