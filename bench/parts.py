"""Parts: a seeded split of one source into disjoint parts (read by the ``part`` importer in
:mod:`bench.importers`), e.g. the training images and the held-back test images of one generator family.

Images with the same pixels stay together, so two parts never share an image even where the source repeats one;
the suite's deduplication checks it again when it draws training and test data (a test image whose pixels are in
training is dropped and counted). Each part gets its share of the distinct images, rounded by largest remainder
(shares that add up to 1 use every image); the images are shuffled with the part's seed and dealt out in
part-name order. A part's manifest records the source it came from (name, sha256, count), every part's share and
size, the seed and which part it holds; every record drawn from it carries those sizes.
"""

from __future__ import annotations

import math

import numpy as np


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

