"""The Python tool: the model's code runs in the bubblewrap sandbox (`posttrain.sandbox`), never in our process.

The reply is what the program printed (stdout, then stderr if any), capped at `MAX_REPLY` characters with the
tail kept (a traceback's last line is the useful one), or a line saying it timed out.
"""

from __future__ import annotations

from posttrain.sandbox import Sandbox, SandboxLimits

MAX_REPLY = 1000
LIMITS = SandboxLimits(timeout_s=5.0, cpu_s=5)


class PythonTool:
    """Runs one program per call in a fresh sandbox."""

    def __init__(self, limits: SandboxLimits = LIMITS):
        self.sandbox = Sandbox(limits)  # raises SandboxUnavailable now if bwrap cannot run

    def __call__(self, code: str) -> str:
        """The program's output (see the module docstring)."""
        result = self.sandbox.run(code)
        if result.timed_out:
            return f"error: timed out after {self.sandbox.limits.timeout_s:g} s"
        out = result.stdout + (("\n" + result.stderr) if result.stderr.strip() else "")
        out = out.strip() or f"(no output; exit status {result.exit_code})"
        return out if len(out) <= MAX_REPLY else "..." + out[-MAX_REPLY:]
