"""Corpus preparation: one module per corpus, kept apart from the model and its data flow.

The contract every corpus module follows (as lhotse's ``recipes/`` do):

* ``download_<corpus>(data_dir, ...)`` fetches archives into ``data_dir/downloads`` with checksums and resume
  (:mod:`asr.corpora.download`); nothing else in ``asr`` touches the network.
* ``prepare_<corpus>(data_dir, ...)`` writes JSON-lines manifests (:mod:`asr.data.manifest`) whose audio paths resolve
  from wherever the manifest is read, and returns their paths.
* ``main(argv)`` is the ``asr <corpus> ...`` subcommand.

These modules import only :mod:`asr.data.audio`, :mod:`asr.data.manifest` and :mod:`asr.data.tokenizer` from the core; nothing
in the core imports them back, so ``asr/`` shows the model's data flow at a glance.
"""
