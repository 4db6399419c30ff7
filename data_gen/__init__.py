"""data_gen: distil chain-of-thought + JSON training data from a teacher LLM (``python -m data_gen.distill``)."""

__version__ = "0.1.0"
