"""asr: recurrent-network (RNN / LSTM / GRU) CTC speech recognition.

The data flow is one-way and each stage has its own module:
manifest -> dataset -> batch -> features -> model -> log-probs -> decoding -> text -> metrics.
"""

__version__ = "0.1.0"
