"""The errors a user can cause, on one base: :class:`ASRError`.

Every error that bad input can cause (a file, a flag, a config key, a manifest line, a model file, an LM, a
download) derives from :class:`ASRError`, so the command line catches one class, once (:func:`asr.cli.main`), and
prints it as one line, ``asr: error: ...``, with exit status 2. From Python, ``except asr.ASRError`` catches the
same set. Each class also derives from the built-in exception that callers already expected of it (``ValueError``
for bad values, ``OSError`` for files that cannot be written, ``RuntimeError`` for a failed download), so code
written against those keeps working.

What is *not* here is a bug: a bare ``ValueError`` or ``IndexError`` from inside the toolkit is never turned into
a tidy message; it keeps its traceback, so that it gets reported and fixed.
"""

from __future__ import annotations


class ASRError(Exception):
    """Base of every error caused by the user's input; its message names the file, line or flag and the reason."""


class UsageError(ASRError, ValueError):
    """A command-line or API argument that cannot be used (a missing input, a flag without the one it needs)."""


# ---------------------------------------------------------------------------------------------------- data


class AudioError(ASRError, ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


class ManifestError(ASRError, ValueError):
    """A manifest line that cannot be used; the message names the file and line."""


class OutOfVocabularyError(ASRError, ValueError):
    """The text has characters that the tokenizer cannot represent."""


class ShardError(ASRError, ValueError):
    """Tar shards or a shard manifest that cannot be used (no such shard, a shard_id out of range, too few shards
    for the readers, an output folder that already holds shards); the message names the file or URL."""


class ConfigError(ASRError, ValueError):
    """A configuration file or override that cannot be used."""


# ------------------------------------------------------------------------------------------- model, decoding


class ModelFileError(ASRError, ValueError):
    """A file that is not a usable asr model; the message names the file and the reason."""


class ExportError(ASRError, ValueError):
    """An export that cannot be done as asked; the message says why in one line."""


class LMError(ASRError, ValueError):
    """A language-model file (ARPA, lexicon, parameters) that cannot be used; the message names the file/line."""


class HotwordsError(LMError):
    """A hotword list that cannot be used; the message names the file and line."""


class RegistryError(ModelFileError):
    """A model registry file (name -> URL, SHA-256, licence, card) that cannot be used, or a name it lacks."""


class AlignmentError(ASRError, ValueError):
    """The text cannot be aligned to the frames (it needs more frames than the log-probs have)."""


# ----------------------------------------------------------------------------------------- inference, scoring


class StreamingError(ASRError, ValueError):
    """A model or input that the chosen streaming mode cannot handle; the message says why."""


class NoReferenceError(ASRError, ValueError):
    """An error rate over no reference words or characters was asked for: it is undefined, never 0 %."""


class PlottingUnavailable(ASRError, ImportError):
    """matplotlib cannot be imported; the message says how to install it."""


# ------------------------------------------------------------------------------------------ training, corpora


class CheckpointWriteError(ASRError, OSError):
    """A checkpoint could not be written (disk full, permissions); the previous file at that path is intact."""


class CorpusError(ASRError, ValueError):
    """The source itself cannot be read (no such folder, a table without a path column, ...)."""


class DownloadError(ASRError, RuntimeError):
    """A download that could not be completed; the message names the URL."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the published checksum."""


class EspeakError(ASRError, RuntimeError):
    """The eSpeak NG library could not be loaded, initialised, or failed to synthesise."""
