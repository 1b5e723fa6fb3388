"""The stages a batch of consumed messages flows through, each a module with one concern.

User events: ``decode`` -> ``catalog`` -> ``fold`` (with its hooks: attribution, prequential
scoring, purchase outcome, segments, learning, archive) -> ``rank`` -> ``commit`` -> ``emit``.
Product records: ``decode`` -> ``products`` -> ``commit`` -> ``emit``.

Every stage works on one ``BatchState`` (``streams.pipeline.batch``); ``crash_guard`` runs a
batch under the crash-loop breaker. ``streams.event_pipeline`` assembles them.
"""
