"""The network and what travels with it: log-mel features, the recurrent CTC model, the model file, export."""
