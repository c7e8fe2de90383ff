"""Keep native libraries' chatter off the terminal: a bad file is one line from mammo-tf, nothing else.

- `opencv()` is how mammo_tf imports cv2 for file I/O: the first call sets
  OpenCV's log level to silent (its libtiff handler logs `[ERROR:0@...]
  TIFF_Error ...` lines through it), unless the user set OPENCV_LOG_LEVEL.
- `captured_stderr()` points file descriptor 2 at a temporary file around a
  native call and hands back what was written there, so a reader can put
  libpng's `libpng error: ...` into its own one-line error instead of letting
  it reach the terminal. It is re-entrant and thread-safe: concurrent callers
  share one redirection (fd 2 is process-wide), the last one out restores it.
  While any caller is inside, other output to fd 2 is captured too, so keep
  the block to the native call itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_capture = None  # the temporary file fd 2 points at while _depth > 0
_configured = False


def opencv():
    """The cv2 module, its logging silenced once (OPENCV_LOG_LEVEL, when set, wins)."""
    global _configured
    import cv2

    if not _configured:
        if "OPENCV_LOG_LEVEL" not in os.environ:
            try:
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            except AttributeError:  # builds without cv2.utils.logging
                cv2.setLogLevel(0)
        _configured = True
    return cv2


def _redirect() -> bool:
    """Point fd 2 at a fresh temporary file (first caller only). False if fd 2 cannot be redirected."""
    global _saved_fd, _capture
    if _depth > 0:
        return _capture is not None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()  # Python's own buffered output goes out before the redirection
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to protect
        return False
    try:
        capture = tempfile.TemporaryFile()  # noqa: SIM115 - lives until the last caller leaves
        os.dup2(capture.fileno(), 2)
    except OSError:  # no room for a temporary file: let the noise through rather than fail the read
        os.close(saved)
        return False
    _saved_fd, _capture = saved, capture
    return True


def _restore() -> None:
    global _saved_fd, _capture
    if _capture is None:
        return
    os.dup2(_saved_fd, 2)
    os.close(_saved_fd)
    _capture.close()
    _saved_fd, _capture = None, None


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to fd 2 inside the block; the yielded list gets its lines on exit."""
    global _depth
    lines: list[str] = []
    with _lock:
        active = _redirect()
        _depth += 1
        start = os.fstat(_capture.fileno()).st_size if active else 0
    try:
        yield lines
    finally:
        with _lock:
            data = b""
            if active and _capture is not None:
                end = os.fstat(_capture.fileno()).st_size
                data = os.pread(_capture.fileno(), end - start, start)
            _depth -= 1
            if _depth == 0:
                _restore()
        lines.extend(line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip())
