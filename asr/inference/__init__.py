"""Recognising audio with a loaded model: files of any length, segmentation at pauses, streaming, output formats."""
