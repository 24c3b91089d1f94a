"""The core of the fine-tuner: data, models, training, evaluation and runs.

Plain Python + torch. Nothing in this package imports jina; the executors and the client's transport
are the only places that speak to a Flow.
"""
