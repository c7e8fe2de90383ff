"""TensorFlow without its start-up chatter: a command's stderr holds the command's own lines.

`import tensorflow` writes six to nine lines to file descriptor 2 on a CPU-only machine
("Could not find cuda drivers", "This TensorFlow binary is optimized ...", absl's "All log messages
before absl::InitializeLog() ..."), some before TensorFlow's logging exists, so no environment variable
removes them all; the first op adds "failed call to cuInit: ... CUDA error". A user reads "CUDA error" at
the start of every good run, and the one-line error contract of the CLI drowns.

`quiet_tensorflow()` (the CLI calls it unless --verbose or MAMMO_VERBOSE=1):
- sets TF_CPP_MIN_LOG_LEVEL=3 (C++ INFO/WARNING/ERROR logs off; cuInit is an ERROR line) unless the user
  set it;
- installs an import hook that runs the first `import tensorflow` with fd 2 captured
  (`native.captured_stderr`) and writes back every captured line that is not known start-up noise
  (`is_startup_noise`), so an unexpected message still reaches the user;
- after that import, sets TensorFlow's and absl's Python loggers to ERROR.
It never imports TensorFlow itself: `mammo-tf --help` stays fast.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys

from mammo_tf.io.native import captured_stderr

# glog-style lines from the native modules that only report the machine (no GPU, CPU features, plugins
# registered twice); anything else that TensorFlow writes while importing is passed through.
_NOISY_SOURCES = (
    "cudart_stub",
    "cpu_feature_guard",
    "cuda_platform",
    "cuda_executor",
    "cuda_diagnostics",
    "cuda_dnn",
    "cuda_fft",
    "cuda_blas",
    "dso_loader",
    "computation_placer",
    "port",  # "oneDNN custom operations are on ..."
    "tf_trt",
)
_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rf"|[IWE]\d{{4}} [\d:.]+\s+\d+ (?:{'|'.join(_NOISY_SOURCES)})\.cc:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r")$"
)


def is_startup_noise(line: str) -> bool:
    """True for a line TensorFlow writes on every CPU-only start-up (see the module docstring)."""
    return bool(_NOISE.match(line.strip()))


def verbose_requested() -> bool:
    """MAMMO_VERBOSE set to anything but '', '0' or 'false' asks for TensorFlow's own logs."""
    return os.environ.get("MAMMO_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: executes the package with fd 2 captured, then filters."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with captured_stderr() as lines:
                self._loader.exec_module(module)
        finally:
            kept = [line for line in lines if not is_startup_noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:  # absl is a TensorFlow dependency; without it there is nothing to quiet
            pass


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, through the normal path finder, and hands back a quiet loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        uninstall()  # one use: later imports are cached in sys.modules anyway
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_finder = _QuietFinder()


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up lines off stderr for the rest of the process (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:  # too late for the import lines; the loggers can still be quieted
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        return
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Remove the import hook (tests; a process that wants TensorFlow's own output back)."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
