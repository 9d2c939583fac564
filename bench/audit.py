"""Data audit: exact and near duplicates within sources and between them (e.g. training vs test).

Exact duplicates share every pixel (compared by a hash of the pixels). Near duplicates are found in two
steps: each image's nearest neighbour by Euclidean distance on 8x8 RGB thumbnails (a cheap, chunked
matrix computation), then a check on the full pixels: a pair counts when the mean absolute difference of
its pixels is at most ``tolerance`` (on 0-255). Only each image's nearest thumbnail is checked, so a near
copy that is not the nearest thumbnail is missed (rare: a copy is almost always the nearest).
Re-encoding one image as JPEG again gives differences of about 0.2-3; different photographs are far above.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bench.sources import Manifest, Source, SourceStore


def pixel_digests(images: np.ndarray) -> list[bytes]:
    """A 16-byte digest of each image's pixels."""
    rows = np.ascontiguousarray(images).reshape(len(images), math.prod(images.shape[1:]))  # one read, not one per image
    return [hashlib.blake2b(row, digest_size=16).digest() for row in rows]


def thumbnails(images: np.ndarray, size: int = 8) -> torch.Tensor:
    """Area-downsampled (N, 3*size*size) float thumbnails for nearest-neighbour search."""
    pixels = torch.tensor(np.asarray(images), dtype=torch.float32)
    return F.adaptive_avg_pool2d(pixels, size).flatten(1)


def nearest(queries: torch.Tensor, pool: torch.Tensor, exclude_self: bool, chunk: int = 2048) -> np.ndarray:
    """For each query, the index of its nearest pool item by Euclidean distance (chunked over queries)."""
    indices = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start : start + chunk], pool)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")
        indices.append(d.argmin(dim=1))
    return torch.cat(indices).numpy()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference of paired images (N, 3, H, W) -> (N,)."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(1, 2, 3))


@dataclass
class Overlap:
    """Duplicates of images of ``query`` found in ``pool`` (the same source for within-source checks)."""

    query: str
    pool: str
    exact: int = 0
    near: int = 0
    examples: list[dict] = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.query == self.pool


def find_duplicates(
    query: Source, pool: Source, tolerance: float = 3.0, examples: int = 5
) -> tuple[Overlap, np.ndarray]:
    """Images of ``query`` with an exact or near copy in ``pool``; also returns the mask of those images.

    Within one source (``query is pool``) an image counts when it has a copy elsewhere in the source that
    comes earlier, so removing the counted images leaves one copy of each.
    """
    within = query.name == pool.name
    result = Overlap(query.name, pool.name)
    q_digests = pixel_digests(query.images)
    first_in_pool: dict[bytes, int] = {}
    for i, digest in enumerate(q_digests if within else pixel_digests(pool.images)):
        first_in_pool.setdefault(digest, i)
    if within:
        exact = np.array([first_in_pool[d] != i for i, d in enumerate(q_digests)])
    else:
        exact = np.array([d in first_in_pool for d in q_digests])
    index = nearest(thumbnails(query.images), thumbnails(pool.images), exclude_self=within)
    candidates = np.flatnonzero(~exact)
    mad = mean_abs_diff(np.asarray(query.images[candidates]), np.asarray(pool.images[index[candidates]]))
    near = np.zeros(len(exact), bool)
    confirmed = candidates[mad <= tolerance]
    if within:
        confirmed = confirmed[index[confirmed] < confirmed]  # keep the first copy of each near pair
    near[confirmed] = True
    result.exact, result.near = int(exact.sum()), int(near.sum())
    for i in np.flatnonzero(exact | near)[:examples]:
        j = index[i] if near[i] else first_in_pool[q_digests[i]]
        result.examples.append({
            "query": query.files[i], "pool": pool.files[j], "kind": "near" if near[i] else "exact",
            "mean_abs_diff": float(mean_abs_diff(query.images[i : i + 1], pool.images[j : j + 1])[0]),
        })
    return result, exact | near


def audit(sources: list[Source], tolerance: float = 3.0) -> tuple[list[Overlap], dict[str, np.ndarray]]:
    """Duplicates within every source, and of every test source's images in every training source.

    Returns the overlaps and, per source, the mask of images a deduplicated copy would drop.
    """
    overlaps, drop = [], {}
    for source in sources:
        overlap, mask = find_duplicates(source, source, tolerance)
        overlaps.append(overlap)
        drop[source.name] = mask
    by_split = defaultdict(list)
    for source in sources:
        by_split[source.manifest.split].append(source)
    for test in by_split["test"]:
        for train in by_split["train"]:
            overlap, mask = find_duplicates(test, train, tolerance)
            overlaps.append(overlap)
            drop[test.name] = drop[test.name] | mask
    return overlaps, drop


def deduplicate(store: SourceStore, source: Source, drop: np.ndarray, name: str) -> Manifest:
    """Store a copy of ``source`` without the images ``drop`` marks, as the source ``name``."""
    keep = np.flatnonzero(~drop)
    return store.save(
        name,
        np.ascontiguousarray(source.images[keep]),
        source.label,
        source.manifest.split,
        {"importer": "cached", "deduplicated_from": source.name, "from_sha256": source.manifest.sha256,
         "dropped": int(drop.sum())},
        source.manifest.encoding,
        [source.files[i] for i in keep],
    )


def render_report(sources: list[Source], overlaps: list[Overlap], tolerance: float) -> str:
    """A Markdown audit report: counts per source and per (test, training) pair, with example pairs."""
    lines = [
        "# Data audit",
        "",
        f"Exact duplicates: identical pixels. Near duplicates: mean absolute pixel difference <= {tolerance} "
        "(0-255 scale) to the nearest neighbour on 8x8 thumbnails; images already counted as exact are not "
        "counted again.",
        "",
        "| source | split | label | images | sha256 |",
        "|---|---|---|---:|---|",
    ]
    lines += [f"| {s.name} | {s.manifest.split} | {s.label} | {s.manifest.count} | `{s.manifest.sha256[:12]}` |"
              for s in sources]
    lines += ["", "| images of | with a copy in | exact | near | share |", "|---|---|---:|---:|---:|"]
    counts = {s.name: s.manifest.count for s in sources}
    for o in overlaps:
        where = "itself (an earlier image)" if o.within else o.pool
        share = (o.exact + o.near) / counts[o.query]
        lines.append(f"| {o.query} | {where} | {o.exact} | {o.near} | {share:.2%} |")
    lines += ["", "## Examples", ""]
    for o in overlaps:
        for e in o.examples:
            lines.append(f"- {o.query} `{e['query']}` ~ {o.pool} `{e['pool']}`: {e['kind']}, "
                         f"mean abs diff {e['mean_abs_diff']:.2f}")
    return "\n".join(lines) + "\n"
