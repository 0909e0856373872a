"""How a command of the ``lgml`` CLI ends when something fails: one message and a non-zero
exit for whatever the commands do not report themselves (:class:`OneErrorPath`), and an orderly
exit on SIGTERM (:func:`exit_cleanly_on_sigterm`)."""

from __future__ import annotations

import logging

import typer
from typer.core import TyperGroup

log = logging.getLogger("lgml")


class OneErrorPath(TyperGroup):
    """Every command's last line of defence: a failure the commands do not report themselves
    ends in one message and a non-zero exit, never a traceback (``-vv`` adds it).

    - the system refused a read or a write (full disk, read-only or missing folder, permission):
      exit 1 with the path and the reason;
    - a file that is not text in the expected encoding: exit 1;
    - anything else is a defect of lgml: exit 70 with a request to report it.
    """

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        import click
        from typer.exceptions import TyperException

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, click.exceptions.Exit, click.exceptions.Abort,
                click.ClickException, SystemExit, KeyboardInterrupt):  # the parser's own messages and exits
            raise
        except Exception as exc:
            if TERMINATED["signum"]:  # the SIGTERM exit surfaced as another error while unwinding
                raise SystemExit(128 + TERMINATED["signum"]) from None
            _report(exc)


def _report(exc: Exception) -> None:
    if isinstance(exc, OSError):
        _last_words(_os_error(exc), exc, 1)
    if isinstance(exc, UnicodeError):
        _last_words(f"a file is not valid text in the expected encoding ({exc})", exc, 1)
    _last_words(f"internal error: {type(exc).__name__}: {exc}. Run again with -vv for the traceback "
                "and please report it.", exc, 70)


def _os_error(exc: OSError) -> str:
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    reason = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.EDQUOT: "disk quota exceeded"}.get(exc.errno, exc.strerror or str(exc))
    return f"{where}{reason}; nothing was written"


TERMINATED: dict[str, int | None] = {"signum": None}  # set by the SIGTERM handler
VERBOSITY = {"level": 0}  # -v count of the running command (set by the CLI's callback)


def _last_words(message: str, exc: BaseException, code: int) -> None:
    if VERBOSITY["level"] >= 2:
        raise exc
    typer.secho(f"lgml: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (what ``timeout``, batch schedulers and Kubernetes send) into an orderly exit:
    the work in progress unwinds, its temporary files and folders are removed, the outputs are
    left as they were, and the exit code is 143 (128 + SIGTERM) as with the default action."""
    import signal
    import threading

    def terminated(signum: int, frame: object) -> None:
        TERMINATED["signum"] = signum
        typer.echo("lgml: terminated (SIGTERM); removing temporary files, outputs are left as they were", err=True)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminated)
