"""The building blocks of a config section: the strict base model and the path markers.

Path-valued fields say so in their schema, and nothing else may hold a path: the service confines
every field marked "read" (an input: it must resolve inside a data root, each file a glob or folder
yields included) and sets every "write" and "roots" field itself (``service.confinement``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo

READ_PATH = {"path": "read"}
WRITE_PATH = {"path": "write"}
ROOTS_PATH = {"path": "roots"}
# Files are opened while validating (a classifier's model card, the domains it labels) only when
# asked: the API validates a request's shape first and opens files only after confining its paths,
# so an error message can never tell whether a file outside the data roots exists.
CHECK_FILES = {"check_files": True}


def checking_files(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("check_files"))


class Strict(BaseModel):
    # NaN and infinities make no sense anywhere in a run config (a NaN share passes any sum check;
    # an infinite timeout disables the per-page CPU limit)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def no_nul(path: str) -> str:
    if "\x00" in path:
        raise ValueError("a path may not contain a NUL byte")
    return path
