"""Every new event goes to the event archive, the offline trainer's history."""

from __future__ import annotations

from streams.event_archive import EventArchive
from streams.pipeline.fold import FoldHook, FoldStep


class Archive(FoldHook):
    def __init__(self, archive: EventArchive):
        self.archive = archive

    def after(self, step: FoldStep) -> None:
        self.archive.add(step.event)
