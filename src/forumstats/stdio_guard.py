"""Keep stray ``print()`` output away from Storm's multi-lang protocol stream.

A Python component talks to its Storm worker over stdout: every message is one JSON
document followed by a line ``end``. Anything else written there corrupts the next frame
and kills the worker. pystorm 3.1.4 does not prevent that (streamparse issue #432): its
``Component.__init__`` binds ``output_stream=sys.stdout`` as a default argument at import
time and wraps ``sys.stdout.buffer`` in a private ``TextIOWrapper``, but ``sys.stdout``
itself keeps pointing at the same file descriptor. Its own redirect to a ``LogStream``
only happens when ``serializer.output_stream == sys.stdout``, which is never true once
the stream has been wrapped, so it does not happen in any configuration.

Call :func:`protect_protocol_stream` first thing in ``initialize()``. By then pystorm
holds its own writer on the protocol stream; afterwards ``sys.stdout`` is the process's
stderr, which Storm copies into the worker log. The protocol writer keeps working.

Limits: this guards every later Python-level use of ``sys.stdout`` (``print()``,
``sys.stdout.write``). A logging handler created earlier with the original ``sys.stdout``
keeps writing there; so does C code or a child process writing to file descriptor 1. Text
printed *before* the call (at import time or in ``__init__``) cannot be taken back: with
buffered stdout it waits in the original ``sys.stdout`` buffer and reaches the protocol
stream later, at the latest when the interpreter exits.

This module belongs to the pure core and imports nothing from streamparse or pystorm.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

__all__ = ["protect_protocol_stream", "is_protected"]

# The interpreter's original stdout wrapper, kept referenced so it is never
# garbage-collected even if something rebinds sys.__stdout__: its finaliser would close
# file descriptor 1, which pystorm still writes the protocol to through its own wrapper.
_original_stdout: TextIO | None = None
_replacement: TextIO | None = None


def _stderr_stream() -> TextIO:
    stream = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    if stream is not None:
        return stream
    # No stderr at all (embedded interpreter): discard stray output.
    return io.TextIOWrapper(open(os.devnull, "wb"), encoding="utf-8", write_through=True)


def protect_protocol_stream() -> TextIO:
    """Point ``sys.stdout`` at stderr so ``print()`` can no longer reach the protocol.

    Call it in a component's ``initialize()``, after pystorm's handshake. Calling it
    more than once is harmless. Returns the stream now installed as ``sys.stdout``.
    """
    global _original_stdout, _replacement
    if _original_stdout is None:
        _original_stdout = sys.stdout
    if _replacement is None:
        _replacement = _stderr_stream()
    sys.stdout = _replacement
    return _replacement


def is_protected() -> bool:
    """True while ``sys.stdout`` is the stream :func:`protect_protocol_stream` installed."""
    return _replacement is not None and sys.stdout is _replacement
