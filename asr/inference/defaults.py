"""The defaults ``asr transcribe`` and the Python API (:mod:`asr.inference.api`) share, defined once so that a
result from the shell and one from Python agree. Plain values, importable without torch (``asr --help`` shows
them and must start fast)."""

DEFAULT_VAD = "energy"  # voice-activity detector that finds the pauses; chosen by measurement: docs/transcription.md
DEFAULT_MAX_SEGMENT_SECONDS = 20.0  # longest piece of audio the model takes at once; longer speech is cut at pauses
DEFAULT_MAX_BATCH_SECONDS = 300.0  # padded audio seconds per batch
