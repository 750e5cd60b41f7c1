"""The jobs layer: ingest, augment, train, finetune, study, serve, refresh.

Each job composes the libraries (datasets, features, synth, label, quality, recommender models,
evaluation) and adapters (Feast, Redis, synthetic runs), takes a ``Workspace`` and plain
arguments, and returns a JSON-able summary. The CLI and the demo are thin wrappers over these.
See docs/CONTRACT.md section 6.
"""
