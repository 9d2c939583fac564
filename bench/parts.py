"""Parts: a seeded split of one source into disjoint parts (the ``part`` importer), e.g. the training images and
the held-back test images of one generator family.

Images with the same pixels stay together, so two parts never share an image even where the source repeats one;
the suite's deduplication checks it again when it draws training and test data (a test image whose pixels are in
training is dropped and counted). Each part gets its share of the distinct images, rounded by largest remainder
(shares that add up to 1 use every image); the images are shuffled with the part's seed and dealt out in
part-name order. A part's manifest records the source it came from (name, sha256, count), every part's share and
size, the seed and which part it holds; every record drawn from it carries those sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.provenance import content_key
from bench.sources import Manifest, SourceError


def part_sizes(count: int, shares: dict[str, float]) -> dict[str, int]:
    """How many of ``count`` items each part gets: ``share * count`` rounded down, the items left over (up to
    ``sum(shares) * count``) given one each to the largest remainders (ties in part-name order)."""
    exact = {part: shares[part] * count for part in sorted(shares)}
    sizes = {part: math.floor(value + 1e-9) for part, value in exact.items()}
    left = math.floor(sum(exact.values()) + 1e-9) - sum(sizes.values())
    for part in sorted(exact, key=lambda p: sizes[p] - exact[p])[:max(left, 0)]:
        sizes[part] += 1
    return sizes


def split_parts(images: np.ndarray, shares: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """The ascending image indices of each part: distinct images (copies grouped by their pixels) shuffled with
    ``seed`` and dealt out in part-name order, in :func:`part_sizes` blocks."""
    from bench.audit import pixel_digests  # imports torch: only when a part is made

    groups: dict[bytes, list[int]] = {}
    for index, digest in enumerate(pixel_digests(images)):
        groups.setdefault(digest, []).append(index)
    members = list(groups.values())
    order = np.random.default_rng(seed).permutation(len(members))
    parts, start = {}, 0
    for part, size in part_sizes(len(members), shares).items():
        chosen = [index for group in order[start : start + size] for index in members[group]]
        parts[part] = np.sort(np.asarray(chosen, dtype=np.int64))
        start += size
    return parts


class PartImporter:
    """One of the disjoint, seeded parts of another declared source (``source``, ``parts``, ``part``, ``seed``)."""

    fields = frozenset({"source", "parts", "part", "seed"})

    def check(self, spec: Any) -> None:
        if spec.source is None or not spec.parts or spec.part is None:
            raise ValueError("the part importer needs 'source', 'parts' (each part's share, e.g. {train: 0.5, test: "
                             "0.5}) and 'part' (which of them this source holds)")
        if spec.part not in spec.parts:
            raise ValueError(f"part {spec.part!r} is not one of the parts ({', '.join(spec.parts)})")
        bad = [part for part, share in spec.parts.items() if not 0 < share <= 1]
        if bad:
            raise ValueError(f"parts: the share of {bad[0]!r} is {spec.parts[bad[0]]}; give a share in (0, 1]")
        if sum(spec.parts.values()) > 1 + 1e-9:
            raise ValueError(f"parts: the shares add up to {sum(spec.parts.values()):g}; they may add up to 1 at most")

    def identity(self, spec: Any, context: Any) -> str | None:
        if not context.store.exists(spec.source):
            return None
        return content_key({"importer": "part", "source": context.store.manifest(spec.source).sha256,
                            "parts": spec.parts, "part": spec.part, "seed": spec.seed, "label": spec.label,
                            "split": spec.split})

    def load(self, name: str, spec: Any, context: Any) -> Manifest:
        source = context.store.load(spec.source)
        indices = split_parts(np.asarray(source.images), spec.parts, spec.seed)
        chosen = indices[spec.part]
        if not len(chosen):
            raise SourceError(f"source {name}: part {spec.part!r} of {spec.source} ({source.manifest.count} images) "
                              "holds no image: give it a larger share")
        origin = {
            "importer": "part",
            "source": {"name": source.name, "sha256": source.manifest.sha256, "count": source.manifest.count},
            "parts": {part: {"share": spec.parts[part], "count": len(found)} for part, found in indices.items()},
            "part": spec.part,
            "seed": spec.seed,
            "identity": self.identity(spec, context),
        }
        return context.store.save(name, np.ascontiguousarray(source.images[chosen]), spec.label, spec.split, origin,
                                  source.manifest.encoding, [source.files[i] for i in chosen])

    def count(self, spec: Any, context: Any) -> int | None:
        if not context.store.exists(spec.source):
            return None
        return part_sizes(context.store.manifest(spec.source).count, spec.parts)[spec.part]
