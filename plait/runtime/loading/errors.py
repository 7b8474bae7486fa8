"""Exceptions raised while finding, verifying and loading models.

Every message names the problem and the command or action that fixes it. Each class also
derives from the matching builtin (ValueError, FileNotFoundError, ...) so callers that catch
builtins keep working.
"""

from __future__ import annotations

from plait.errors import PlaitError


class ModelLoadError(PlaitError):
    """Base class of every model-loading error raised by plait."""


class UnknownModelError(ModelLoadError, ValueError):
    """A name that is neither a bundled model, an existing path, nor a hub id."""


class MissingModelFilesError(ModelLoadError, FileNotFoundError):
    """A model directory or file lacks what plait needs (config, weights, tokenizer)."""


class MissingPackageError(MissingModelFilesError):
    """A bundled model's pip package is not installed (or lost its data file)."""


class CorruptModelError(ModelLoadError, ValueError):
    """Weights that cannot be parsed, are truncated, or do not match their config."""


class HashMismatchError(CorruptModelError):
    """Bundled weights whose sha256 differs from the one plait was released with."""


class HubUnavailableError(ModelLoadError, ConnectionError):
    """A Hugging Face hub id that could not be fetched (offline machine, unknown repo)."""
