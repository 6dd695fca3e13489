"""Templates compiled for sending, kept on disk from one process to the next.

Inlining a template's CSS takes tens of milliseconds, and premailer's first use in a process well over
a hundred; every `nurture send-due` is a new process, and so is each long run's builder. What the loader
makes of a template is a pure function of the files it reads, so it is kept under a hash of them, in a
folder named after the code that makes it (nurture's inlining and rendering, premailer, cssutils,
Jinja, Python): an upgrade starts a folder of its own, and an edited template is a new entry. Jinja's
own bytecode cache sits in the same folder, for the same reason.

A folder that cannot be made or written to costs the speed, never a message: the template is compiled
as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

import jinja2

log = logging.getLogger(__name__)


class TemplateCache:
    """Compiled template sources, and Jinja's bytecode, in `folder`; with no folder, nothing is kept."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.bytecode = None if folder is None else jinja2.FileSystemBytecodeCache(str(folder))

    @classmethod
    def under(cls, root: Path | None) -> TemplateCache:
        """The cache of this version of the code, in a folder of `root` (made, readable by its owner only)."""
        if root is None:
            return cls(None)
        folder = root / f"templates-{_code_version()}"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            log.warning("compiled templates are not kept: %s", error)
            return cls(None)
        return cls(folder)

    def source(self, parts: tuple[str, ...], make: Callable[[], str]) -> str:
        """What `make` returns for the inputs `parts`: read from the folder, or made and kept there."""
        if self.folder is None:
            return make()
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        path = self.folder / f"{digest}.source"
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("compiled template %s not read: %s", path, error)
        made = make()
        self._keep(path, made)
        return made

    def _keep(self, path: Path, text: str) -> None:
        """Write whole or not at all: another process may read it at any moment."""
        try:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                             suffix=".part") as part:
                part.write(text)
            os.replace(part.name, path)
        except OSError as error:
            log.warning("compiled template %s not kept: %s", path, error)


@cache
def _code_version() -> str:
    from nurture import inline, render

    parts = [Path(module.__file__ or "").read_bytes() for module in (inline, render)]
    parts += [metadata.version(name).encode() for name in ("premailer", "cssutils", "jinja2")]
    parts.append(sys.version.encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
