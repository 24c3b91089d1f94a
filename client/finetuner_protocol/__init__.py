"""What the client and the service share: endpoint names, typed messages, run statuses, ids, metric and stage keys,
structured log records, the documents on the wire, the data formats both sides read, and the backbone catalogue.

Light by design (pydantic, docarray, numpy, Pillow): the thin client imports nothing else, and the service's core
builds on it. Nothing here imports ``finetuner`` (the client) or ``finetuner_core`` (the service).
"""
