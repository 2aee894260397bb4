"""Reading the files a user hands the project: a config file, a run's `summary.json`, a tune's
stage records, a saved range test. Whatever stops a read (a folder in the file's place, no
permission, a syntax error, bytes that are not UTF-8 text, JSON that does not parse or has the
wrong shape) becomes one `UnreadableFileError` naming the file and the cause, which the command
line prints as one line with exit status 2 (`hparams_jax.cli`)."""

from __future__ import annotations

import json
import runpy
import traceback
from pathlib import Path
from typing import Any

from hparams_jax.errors import UnreadableFileError


def read_text(path: str | Path, what: str = "") -> str:
    """The text of `path`; `UnreadableFileError` when it is a folder, missing, unreadable or
    not UTF-8. `what` prefixes the message (e.g. "--config ")."""
    path = Path(path)
    if path.is_dir():
        raise UnreadableFileError(path, "it is a folder, not a file", what)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableFileError(path, "no such file", what) from None
    except OSError as err:
        raise UnreadableFileError(path, err.strerror or str(err), what) from None
    except UnicodeDecodeError as err:
        raise UnreadableFileError(path, f"not UTF-8 text (byte {err.start} is "
                                        f"0x{err.object[err.start]:02x})", what) from None


def read_json(path: str | Path, what: str = "", expected: str = "a JSON object") -> Any:
    """The JSON object in `path`; `UnreadableFileError` when the file cannot be read (see
    `read_text`), is not JSON or holds something else than an object (`expected` says what it
    must hold)."""
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except ValueError as err:
        where = (f"{err.msg}: line {err.lineno} column {err.colno}"
                 if isinstance(err, json.JSONDecodeError) else str(err))
        raise UnreadableFileError(path, f"it is not JSON ({where})", what) from None
    if not isinstance(value, dict):
        raise UnreadableFileError(path, f"it holds a JSON {_json_kind(value)}; it must be "
                                        f"{expected}", what)
    return value


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def run_python(path: str | Path, what: str = "") -> dict[str, Any]:
    """The namespace of the Python file `path` once run; a syntax error, or an exception the
    file raises, is an `UnreadableFileError` naming the file, the line and the error."""
    path = Path(path)
    read_text(path, what)  # a folder, a missing or undecodable file: named as such
    try:
        return runpy.run_path(str(path))
    except SyntaxError as err:
        raise UnreadableFileError(path, f"syntax error at line {err.lineno}: {err.msg}",
                                  what) from None
    except Exception as err:  # an error of the user's file, named with its line
        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        where = f" at line {frames[-1].lineno}" if frames else ""
        message = " ".join(str(err).split())
        raise UnreadableFileError(path, f"running it raised {type(err).__name__}{where}: "
                                        f"{message}", what) from None
