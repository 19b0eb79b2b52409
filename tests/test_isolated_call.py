"""call_isolated: a fresh process outside the terminal's process group, its result or exception brought back,
nothing left running when the caller dies."""

import os
import signal
import subprocess
import sys
import time

import pytest

from nnunet_attention.isolated_call import call_isolated


def test_the_call_returns_its_value_from_another_process_in_its_own_session():
    assert call_isolated(divmod, 17, 5) == (3, 2)
    assert call_isolated(os.getpid) != os.getpid()
    assert call_isolated(os.getsid, 0) != os.getsid(0)  # Ctrl-C at the terminal reaches the caller alone


def test_the_process_ends_cleanly_after_returning():
    """Nothing on stderr: a watchdog blocked in sys.stdin's buffered reader made every call's process abort at
    shutdown with "Fatal Python error: _enter_buffered_busy" (after its result was written)."""
    caller = "from nnunet_attention.isolated_call import call_isolated; print(call_isolated(divmod, 17, 5))"
    result = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "(3, 2)\n", "")


def test_an_exception_is_raised_here_with_the_process_traceback_as_its_cause():
    with pytest.raises(ValueError, match="invalid literal for int") as raised:
        call_isolated(int, "seven")
    assert "Traceback" in str(raised.value.__cause__)


def test_a_process_that_dies_before_returning_is_an_error_naming_the_call_and_exit_code():
    with pytest.raises(ChildProcessError, match="calling posix._exit ended with exit code 7 before it returned"):
        call_isolated(os._exit, 7)


CALLER = """
import subprocess, sys
from nnunet_attention.isolated_call import call_isolated
SLEEPER = "import os, time; print(os.getppid(), os.getpid(), flush=True); time.sleep(60)"
call_isolated(subprocess.run, [sys.executable, "-c", SLEEPER])
"""


def test_the_process_ends_by_itself_when_its_caller_is_killed():
    caller = subprocess.Popen([sys.executable, "-c", CALLER], stdout=subprocess.PIPE, text=True)
    isolated, sleeper = map(int, caller.stdout.readline().split())  # the isolated process runs the sleeper
    caller.kill()
    caller.wait()
    try:
        deadline = time.monotonic() + 20
        while os.path.exists(f"/proc/{isolated}") and open(f"/proc/{isolated}/stat").read().split()[2] != "Z":
            if time.monotonic() > deadline:
                os.kill(isolated, signal.SIGKILL)
                pytest.fail("the isolated process outlived its killed caller")
            time.sleep(0.1)
    finally:
        os.kill(sleeper, signal.SIGKILL)
