"""Candidates: profiles, photos and documents, bulk import and export (issue 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.services.candidates.importer import Importer
from node.services.candidates.media import Media
from node.services.candidates.records import Candidates

if TYPE_CHECKING:
    from node.services.system import NodeContext


@dataclass
class CandidateServices:
    """The candidate services of one node."""

    records: Candidates
    media: Media
    importer: Importer

    @classmethod
    def build(cls, ctx: NodeContext) -> CandidateServices:
        """Wire the services for ``ctx``."""
        records = Candidates(ctx)
        return cls(records, Media(records), Importer(records))
