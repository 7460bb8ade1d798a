"""From log-probabilities to text: greedy CTC, n-gram LM beam search, ARPA building, word alignment."""
