"""Audio, manifests, tokenizers and the datasets and samplers that turn them into batches: the bottom of the data flow."""
