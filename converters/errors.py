"""The project's one exception type and the CLI wrapper that turns it into one line on stderr."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class EmoDetError(Exception):
    """Bad input or a failed step; the message names the file (and row) at fault."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI `main`, turning EmoDetError (and Ctrl-C) into one line and an exit code, not a traceback."""
    try:
        return int(main(argv) or 0)
    except EmoDetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head -1`: the reader left; nothing to say and nobody to say it to
        import os
        try:  # Python would report the closed pipe again while flushing stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured, replaced)
            pass
        return 141
    except OSError as exc:  # a full or read-only disk, an output path that is a file: the OS says which file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
