"""The one family of errors Horizon Lens raises on purpose.

Every error a user can cause (a bad corpus, a refused query, a malformed log, an unusable checkpoint)
is a `HorizonLensError`; the CLI and the app catch this base class and show its message, which says
what is wrong and, where there is one, what to do. Anything else escaping is a bug, not a user error.
"""

from __future__ import annotations


class HorizonLensError(Exception):
    """Base class: a problem the user can act on. `str(err)` is the message shown as is."""


class CorpusError(HorizonLensError):
    """A corpus cannot be opened or written; the message names the file and why."""


class SchemaError(CorpusError):
    """A corpus file or a table about to be written does not match the corpus contract."""


class CorpusLockedError(CorpusError):
    """Another writer holds the corpus lock and did not release it in time."""


class StoreError(HorizonLensError):
    """A query over the corpus failed; the message says why in the user's terms."""


class SqlError(StoreError):
    """SQL typed by a user was refused or failed."""


class ImportFailed(HorizonLensError):
    """Nothing was imported (strict mode, or no readable input); the message lists why."""


class LabelError(HorizonLensError):
    """A label, or a label file, cannot be stored; the message says which one and why. Nothing was written."""


class RecordError(HorizonLensError):
    """One source record cannot be converted; the importer reports it with its location and goes on."""


class CheckpointError(HorizonLensError):
    """A checkpoint cannot be used; the message says what is wrong and what to do."""


class NotMoEError(CheckpointError):
    """The model has no router modules: it can be replayed for surprisal, but without routing."""


class ReplayError(HorizonLensError):
    """A replay cannot run or its cached results cannot be read."""


class ExportError(HorizonLensError):
    """Data cannot leave Horizon Lens as asked (an export or a bundle); nothing was written."""


class AccessDenied(HorizonLensError):
    """The principal acting (a signed-in user, or nobody) may not do this; nothing was done."""


class ServerConfigError(HorizonLensError):
    """A team server's configuration (users file, hosts, corpora, sign-in provider) cannot be used."""


__all__ = [
    "AccessDenied",
    "CheckpointError",
    "CorpusError",
    "CorpusLockedError",
    "ExportError",
    "HorizonLensError",
    "ImportFailed",
    "LabelError",
    "NotMoEError",
    "RecordError",
    "ReplayError",
    "SchemaError",
    "ServerConfigError",
    "SqlError",
    "StoreError",
]
