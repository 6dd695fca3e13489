"""Templates compiled for sending, kept on disk from one process to the next.

Inlining a template's CSS takes tens of milliseconds, and premailer's first use in a process well over
a hundred; every `nurture send-due` is a new process, and so is each long run's builder. What the loader
makes of a template is a pure function of the files it reads, so it is kept under a hash of them, in a
folder named after the code that makes it (nurture's inlining and rendering, premailer and what it
parses with, Jinja, Python): an upgrade starts a folder of its own, and an edited template is a new
entry. Jinja's own bytecode cache sits in the same folder, for the same reason.

What is kept is run as template code, so the folder must be this user's alone (not a link, no access
for others), as Jinja asks of its own; and an entry carries the hash of its text, so that one cut short
(a crash, a full disk) is made again rather than served. A folder that cannot be used or written to
costs the speed, never a message: the template is compiled as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

import jinja2

log = logging.getLogger(__name__)
CODE = ("premailer", "cssutils", "lxml", "cssselect", "jinja2", "markupsafe")  # what compiling depends on


class TemplateCache:
    """Compiled template sources, and Jinja's bytecode, in `folder`; with no folder, nothing is kept."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.bytecode = None if folder is None else _Bytecode(str(folder))

    @classmethod
    def under(cls, root: Path | None) -> TemplateCache:
        """The cache of this version of the code, in a folder of `root` that only this user may use."""
        if root is None:
            return cls(None)
        folder = root / f"templates-{_code_version()}"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = folder.lstat()
        except OSError as error:
            log.warning("compiled templates are not kept: %s", error)
            return cls(None)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
            log.warning("compiled templates are not kept: %s is not a folder of this user's alone", folder)
            return cls(None)
        return cls(folder)

    def source(self, inputs: tuple[str, ...], make: Callable[[], str]) -> str:
        """What `make` returns for `inputs`: read from the folder, or made and kept there."""
        if self.folder is None:
            return make()
        key = hashlib.sha256(b"".join(hashlib.sha256(part.encode()).digest() for part in inputs)).hexdigest()
        path = self.folder / f"{key}.source"
        kept = self._read(path)
        if kept is not None:
            return kept
        made = make()
        self._keep(path, made)
        return made

    def _read(self, path: Path) -> str | None:
        """An entry's text, if it is there and whole."""
        try:
            checksum, _, text = path.read_text(encoding="utf-8").partition("\n")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            log.warning("compiled template %s not read: %s", path, error)
            return None
        return text if checksum == _checksum(text) else None

    def _keep(self, path: Path, text: str) -> None:
        """Written beside it, then renamed: another process never reads half of one."""
        part: str | None = None
        try:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                             prefix=path.name, suffix=".part") as file:
                part = file.name
                file.write(f"{_checksum(text)}\n{text}")
            os.replace(part, path)
        except OSError as error:
            log.warning("compiled template %s not kept: %s", path, error)
            if part is not None:
                Path(part).unlink(missing_ok=True)


class _Bytecode(jinja2.FileSystemBytecodeCache):
    """Jinja's bytecode cache, whose reads and writes may fail without failing the template."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError as error:
            log.warning("compiled template bytecode not read: %s", error)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as error:
            log.warning("compiled template bytecode not kept: %s", error)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@cache
def _code_version() -> str:
    parts = [path.read_bytes() for path in sorted(Path(__file__).parent.glob("*.py"))]  # the code that compiles
    parts += [f"{name} {metadata.version(name)}".encode() for name in CODE]
    parts.append(sys.version.encode())
    return hashlib.sha256(b"".join(hashlib.sha256(part).digest() for part in parts)).hexdigest()[:16]
