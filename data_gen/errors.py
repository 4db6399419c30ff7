"""The exceptions that cross packages, and how the command-line tools turn them into one line and an exit status.

  2  ConfigError: bad input or configuration, found before anything is spent (InputError: the input file)
  3  ServiceError: a teacher or server that cannot serve the run (TeacherSetupError, eval's ServerError, ...)
  4  stopped by the budget (data_gen.distill only)
130  interrupted
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from data_gen.redact import redact

EXIT_CONFIG = 2
EXIT_SERVICE = 3
EXIT_BUDGET = 4
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A configuration problem, reported as one line before anything is spent."""


class InputError(ConfigError):
    """The input cannot be read at all (missing file, unknown format, missing column, ...)."""


class ServiceError(RuntimeError):
    """A teacher, model server or endpoint that cannot serve this run: the run stops (what was received is kept)."""


class TeacherSetupError(ServiceError):
    """The endpoint cannot serve this run at all (unreachable, key rejected, model unknown). Stops the run."""


def run_cli(work: Callable[[], int], stored: str, resume_hint: Callable[[], str] | None = None) -> int:
    """Run a command-line tool's ``work`` and turn the errors above into one redacted line on stderr and an exit
    status (keys registered with ``redact`` are masked). ``stored`` says what an interrupted run keeps;
    ``resume_hint()``, when given, follows a ServiceError."""
    try:
        return work()
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except ServiceError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        hint = resume_hint() if resume_hint else ""
        if hint:
            print(hint, file=sys.stderr)
        return EXIT_SERVICE
    except KeyboardInterrupt:
        print(f"interrupted: {stored}; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
