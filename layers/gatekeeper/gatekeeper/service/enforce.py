"""Enforce: converge an image's tags (and storage class) to its verdict. Called only by the
holder of the image's lease."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.adapters.ecr import TagTaken, UnsafeUntag
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.reconcile import TagPlan, plan
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.observability import logger
from gatekeeper.service.ports import Images


@dataclass(frozen=True)
class Reconciled:
    tags: tuple[str, ...]  # the image's tags afterwards
    plan: TagPlan
    removed: tuple[str, ...]

    @property
    def foreign_prefixes(self) -> tuple[str, ...]:
        """Digest prefixes of the images whose markers were found here (removed)."""
        return tuple(dict.fromkeys(p for t, p in self.plan.foreign if t in self.removed))


class Enforcer:
    def __init__(self, images: Images, markers: MarkerScheme) -> None:
        self.images = images
        self.markers = markers

    def plan(self, digest: str, actual: list[str], outcome: Outcome | None,
             write: bool) -> TagPlan:
        return plan(self.markers, digest, actual, outcome, write=write)

    def reconcile(self, repo: str, digest: str, actual: list[str], outcome: Outcome | None,
                  write: bool) -> Reconciled:
        """Add the verdict's marker first, then remove every contradicting marker the image
        carries (never its last tag). ImageGone propagates."""
        todo = self.plan(digest, actual, outcome, write)
        tags = list(actual)
        if todo.add:
            try:
                if self._add(repo, digest, todo.add):
                    logger.info("marker tag added", repository=repo, digest=digest,
                                tag=todo.add)
                tags.append(todo.add)
            except UnsafeUntag as unsafe:
                # Our marker cannot be written: remove nothing the image's last tag needs.
                logger.warning("marker tag not written", repository=repo, digest=digest,
                               tag=todo.add, reason=str(unsafe))
                todo = self.plan(digest, actual, outcome, write=False)
        removed: list[str] = []
        if todo.remove:
            removed = self.images.remove_tags(repo, digest, list(todo.remove))
            logger.info("contradicting markers removed", repository=repo, digest=digest,
                        tags=removed)
        for kept in todo.kept:
            logger.warning("contradicting marker kept: it is the image's only tag", tag=kept,
                           repository=repo, digest=digest)
        after = tuple(t for t in dict.fromkeys(tags) if t not in removed)
        return Reconciled(after, todo, tuple(removed))

    def _add(self, repo: str, digest: str, tag: str) -> bool:
        """Put our marker on the image; if another image of the repository carries it (a
        forged marker where a tag cannot move), take it back from that image first."""
        try:
            return self.images.add_tag(repo, digest, tag)
        except TagTaken as taken:
            holder_tags = self.images.observe(repo, taken.holder)
            logger.warning("our marker is on another image; taking it back", tag=tag,
                           repository=repo, digest=digest, holder=taken.holder)
            if len(holder_tags) < 2:
                raise UnsafeUntag(f"{tag} is the only tag of {repo}@{taken.holder}; removing "
                                  "it would delete that image") from taken
            self.images.remove_tags(repo, taken.holder, [tag])
            return self.images.add_tag(repo, digest, tag)

    def storage(self, repo: str, digest: str, verdict: Verdict, archived: bool) -> bool:
        """With enforcement: archive, a quarantined image is archived so that pulls fail, and
        restored once approved. Returns whether the image is (left) archived by us."""
        if verdict.outcome is Outcome.QUARANTINED and verdict.enforcement == "archive":
            if archived:
                return True
            if self.images.set_storage_class(repo, digest, "ARCHIVE"):
                logger.info("image archived", repository=repo, digest=digest)
                return True
            logger.warning("image cannot be archived; its marker still marks it", repository=repo,
                           digest=digest)
            return False
        if archived and verdict.outcome.approved:
            self.images.set_storage_class(repo, digest, "STANDARD")
            logger.info("image restored from the archive", repository=repo, digest=digest)
            return False
        return archived

    @staticmethod
    def storage_due(verdict: Verdict, archived: bool) -> bool:
        """The storage class the verdict calls for differs from the image's."""
        if verdict.monitor:
            return False
        archive = verdict.outcome is Outcome.QUARANTINED and verdict.enforcement == "archive"
        return archive != archived if archive or verdict.outcome.approved else False
