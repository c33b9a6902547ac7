"""Does the ledger show what its journal recorded? (``zeroerrand ledger verify``)

Every line is rebuilt from its journal entries (journal.py) and compared with the line's document,
which every view, the console and the report read. They differ only if a writer stopped between
storing a version's entry and writing the document (the next write to the line repairs it), or if
someone edited the store by hand. ``repair`` writes the journal's version back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from services.evaluation.journal import JournalError, fold
from services.evaluation.repository import LedgerRepository


@dataclass
class Audit:
    projects: int = 0
    lines: int = 0
    entries: int = 0
    differ: list[str] = field(default_factory=list)  # the document is not the journal's last version
    unjournaled: list[str] = field(default_factory=list)  # a document with no journal
    broken: list[str] = field(default_factory=list)  # a journal that cannot be folded, with why
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.differ or self.unjournaled or self.broken)


async def verify(repo: LedgerRepository, *, repair: bool = False) -> Audit:
    """Compares each project's lines with their journal, one project at a time (two look-ups each)."""
    audit = Audit()
    for code in await repo.journal_projects():
        audit.projects += 1
        entries = await repo.project_journal(code)
        audit.entries += len(entries)
        by_key: dict[str, list[dict[str, object]]] = defaultdict(list)
        for entry in entries:
            by_key[str(entry["key"])].append(entry)
        stored = {item.key: item for item in await repo.project_items(code)}
        audit.unjournaled += sorted(set(stored) - set(by_key))
        for key, journal in sorted(by_key.items()):
            audit.lines += 1
            try:
                recorded = fold(journal)
            except JournalError as exc:
                audit.broken.append(str(exc))
                continue
            if stored.get(key) != recorded:
                audit.differ.append(key)
                if repair:
                    await repo.restore(key)
                    audit.repaired.append(key)
    return audit
