"""Scoring a model against references: WER/CER, error breakdowns, the JSON and HTML reports, LM weight tuning."""
