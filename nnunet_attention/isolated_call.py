"""Call one function in a fresh Python process that Ctrl-C at the terminal does not reach.

The benchmark measures every network in its own process, so that peak memory is the network's own and nothing
carries over. A process started by :mod:`multiprocessing` shares the terminal's process group: Ctrl-C pressed
while it boots (it imports torch for seconds) prints its own traceback over the caller's message, or one for its
truncated start-up data. Ignoring SIGINT while starting it does not help either: another thread of the caller
(torch starts some) can take the signal meanwhile, and the press is lost. Here the process runs in its own
session, so Ctrl-C reaches the caller alone, which stops the call; and it ends by itself when the caller dies
(its stdin, which the caller holds open, reaches end-of-file), so nothing outlives a killed run.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.pool import ExceptionWithTraceback
from pathlib import Path
from typing import Any, TypeVar

Result = TypeVar("Result")

_CALLER_GONE_EXIT_CODE = 3


def call_isolated(function: Callable[..., Result], *arguments: Any) -> Result:
    """``function(*arguments)`` in a fresh process: its return value, or its exception re-raised here with the
    process' traceback as ``__cause__`` (as :mod:`multiprocessing` does). ``function`` and ``arguments`` must be
    picklable. KeyboardInterrupt (or any exception) while waiting kills the process before it propagates."""
    with tempfile.TemporaryDirectory(prefix="nnunet_attention_call_") as folder:
        result_file = Path(folder) / "result.pickle"
        process = subprocess.Popen([sys.executable, "-m", __name__, str(result_file)], stdin=subprocess.PIPE,
                                   start_new_session=True)
        try:
            process.stdin.write(pickle.dumps((function, arguments)))
            process.stdin.flush()
            exit_code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdin.close()
        if not result_file.exists():
            raise ChildProcessError(f"the process calling {function.__module__}.{function.__qualname__} ended with "
                                    f"exit code {exit_code} before it returned; its output is above")
        returned, value = pickle.loads(result_file.read_bytes())
    if not returned:
        raise value
    return value


def _end_when_the_caller_does() -> None:
    # reads the file descriptor, not sys.stdin: a thread blocked inside sys.stdin's buffered reader holds its lock,
    # and the interpreter's shutdown, which takes that lock, then aborts with "Fatal Python error"
    while os.read(sys.stdin.fileno(), 4096):  # b"" at end-of-file only: the caller closed its end or died
        pass
    os._exit(_CALLER_GONE_EXIT_CODE)


def _serve(result_file: Path) -> None:
    function, arguments = pickle.load(sys.stdin.buffer)
    threading.Thread(target=_end_when_the_caller_does, daemon=True).start()
    try:
        outcome = (True, function(*arguments))
    except Exception as error:
        outcome = (False, ExceptionWithTraceback(error, error.__traceback__))
    partial = result_file.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(outcome))
    partial.replace(result_file)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
