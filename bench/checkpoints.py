"""Checkpoints: safetensors weights plus a JSON sidecar, cached by content key and checked on load.

``<data_dir>/checkpoints/<key>.safetensors`` holds a detector's weights (never a pickle); ``<key>.json``
holds the sha256 of that file and what training measured (threshold, validation metrics, history). The JSON
is written last, so a checkpoint without it was interrupted and does not count. A checkpoint whose sidecar is
unreadable or whose weights do not match it is set aside (``*.corrupt``) and counts as missing, so it is
retrained; temporary files of killed runs (``.KEY.*``) are deleted when the store is opened. A checkpoint whose
tensors do not fit the model it is asked for (names or shapes differ) is never loaded into it: it counts as
missing, with one line saying why, and is retrained. Trained generators use the same layout under
``<data_dir>/generators``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bench.files import file_sha256, remove_abandoned, temp_suffix, write_atomic
from bench.weights import fit_problems

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A cached trained model: its key, weights file and training information."""

    key: str
    path: Path
    info: dict

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_file(self.path)


def misfit(path: Path, expected: Mapping[str, torch.Tensor]) -> str | None:
    """Why the tensors stored in ``path`` do not fit a model whose state is ``expected`` (names and shapes, read
    from the file's header without loading it), or None when they fit."""
    with safe_open(path, "pt") as stored:
        shapes = {name: tuple(stored.get_slice(name).get_shape()) for name in stored.keys()}
    return "; ".join(fit_problems({k: tuple(v.shape) for k, v in expected.items()}, shapes)) or None


class CheckpointStore:
    """Checkpoints under ``<data_dir>/<folder>`` (``checkpoints`` for detectors, ``generators`` for generators)."""

    def __init__(self, data_dir: Path, folder: str = "checkpoints") -> None:
        self.root = Path(data_dir) / folder
        remove_abandoned(self.root)

    def has(self, key: str) -> bool:
        """Whether ``key`` has a complete checkpoint (its sidecar is written last); nothing is checked or moved."""
        return (self.root / f"{key}.json").is_file() and (self.root / f"{key}.safetensors").is_file()

    def get(self, key: str, fits: Mapping[str, torch.Tensor] | None = None) -> Checkpoint | None:
        """The checkpoint for ``key``, or None if absent or corrupt (a corrupt one is set aside and logged), or if its
        tensors do not fit ``fits``, the state of the model it is for (logged in one line; retraining replaces it)."""
        weights, sidecar = self.root / f"{key}.safetensors", self.root / f"{key}.json"
        if not sidecar.is_file():
            return None
        try:
            info = json.loads(sidecar.read_text())
        except ValueError:  # not JSON, or not UTF-8 text
            info = None
        if not isinstance(info, dict):
            problem = f"its sidecar {sidecar.name} is not a JSON object"
        elif not weights.is_file() or file_sha256(weights) != info.get("sha256"):
            problem = "it does not match its recorded sha256"
        elif fits is not None and (problem := misfit(weights, fits)):
            log.warning("checkpoint %s does not fit the model it is for (%s), which changed since it was trained: "
                        "retraining it", key, problem)
            return None
        else:
            return Checkpoint(key, weights, info)
        log.warning("checkpoint %s: %s: set aside as *.corrupt, it will be retrained", key, problem)
        for path in (weights, sidecar):
            if path.exists():
                path.replace(path.with_suffix(path.suffix + ".corrupt"))
        return None

    def discard(self, key: str) -> None:
        """Delete the checkpoint for ``key``, if any (the sidecar first, so that what an interruption leaves is not
        complete), so that it is trained again."""
        for path in (self.root / f"{key}.json", self.root / f"{key}.safetensors"):
            path.unlink(missing_ok=True)

    def put(self, key: str, state: dict[str, torch.Tensor], info: dict) -> Checkpoint:
        """Store weights and information under ``key``; returns the stored checkpoint."""
        self.root.mkdir(parents=True, exist_ok=True)
        weights = self.root / f"{key}.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=temp_suffix(), dir=self.root)
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp, metadata={"key": key})
            os.replace(tmp, weights)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        info = {**info, "key": key, "sha256": file_sha256(weights)}
        write_atomic(self.root / f"{key}.json", json.dumps(info, indent=2, sort_keys=True).encode())
        return Checkpoint(key, weights, info)
