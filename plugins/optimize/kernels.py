"""BoTorch's fused qLogEHVI C++ kernel without a first-call stall.

BoTorch (0.18) speeds up the inner loop of qLogEHVI/qLogNEHVI with a C++ kernel (``botorch/csrc/
logei_fused.cpp``) that a pip install JIT-compiles with ``torch.utils.cpp_extension.load`` the first time such
an acquisition function is built: 27-43 s on a 2-core machine (measured 33.6 s with an empty
``TORCH_EXTENSIONS_DIR``), inside the first suggestion of a fresh environment. Once built it is cached in
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) and loads in well under a second.

:func:`fused_logehvi` lets BoTorch load the kernel when the cached build exists; otherwise it tells BoTorch to
use its pure-Python path for now (the same numbers, 1.5-3x slower inner loop) and compiles the kernel in a
detached, low-priority background process, so a later ask (or the next run) picks it up.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("reflow")

NAME = "logei_fused_ext"
_started = False

BUILD = ("import warnings; warnings.simplefilter('ignore'); "
         "from botorch.acquisition.multi_objective import logei; logei._try_load_fused_kernel()")


def build_dir() -> Path:
    """Where torch's cpp_extension keeps this kernel's build (honours ``TORCH_EXTENSIONS_DIR``)."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(NAME, verbose=False))


def built() -> bool:
    """Has the kernel been compiled in this environment already?"""
    try:
        return (build_dir() / f"{NAME}.so").exists()
    except Exception:  # noqa: BLE001 - an unusual torch layout: treat it as not built, the fallback is safe
        return False


def start_build() -> None:
    """Compile the kernel in a detached background process at low priority (once per process)."""
    global _started
    if _started:
        return
    _started = True
    try:
        subprocess.Popen([sys.executable, "-c", BUILD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=(lambda: os.nice(10)) if hasattr(os, "nice") else None)
    except OSError as exc:
        log.info("could not start the background build of BoTorch's fused qLogEHVI kernel (%s); the "
                 "pure-Python path is used", exc)
        return
    log.info("BoTorch's fused qLogEHVI kernel is not built in this environment: compiling it in the background "
             "(once, into %s); until then qLogNEHVI uses BoTorch's pure-Python path", build_dir())


def fused_logehvi() -> bool:
    """Before a qLogEHVI/qLogNEHVI is built: True when BoTorch will use the fused kernel (already loaded or
    cached), False when it is told to use its pure-Python path while the kernel compiles in the background."""
    from botorch.acquisition.multi_objective import logei

    if logei._C is not None:
        return True
    if built():
        logei._load_attempted = False  # the cached build loads quickly (a fallback earlier in this process)
        return True
    logei._load_attempted = True  # BoTorch skips its JIT compile and keeps the pure-Python implementation
    start_build()
    return False
