"""Weights made elsewhere, loaded safely: safetensors files, or PyTorch ``.pt``/``.pth`` state dicts read with
``torch.load(weights_only=True)``, whose restricted unpickler builds tensors and containers only and never runs
code a file names. A file that needs full unpickling is refused with how to convert it where it is trusted.

Loading is strict: the file's tensor names (after an optional prefix is stripped or added) must be exactly the
model's, with the same shapes; everything that differs is named in one error. Torch is imported when a file is
read, so that suites naming weights validate without it.
"""

from __future__ import annotations

import json
import math
import shlex
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.files import file_sha256

if TYPE_CHECKING:
    import torch
    from torch import nn

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth")
WEIGHT_SUFFIXES = (*SAFETENSORS_SUFFIXES, *PICKLE_SUFFIXES)
LISTED = 4  # key names shown per kind of mismatch


class WeightsError(ValueError):
    """A weights file cannot be used: unsafe, unreadable or not the model's; the message says what to do."""


@dataclass(frozen=True)
class WeightsFile:
    """A weights file as it was read: its path, sha256, format, the key remapping applied, and where in the file
    the state dict was found (``""``: at the top)."""

    path: Path
    sha256: str
    format: str
    strip_prefix: str | None = None
    add_prefix: str | None = None
    inside: str = ""

    def describe(self) -> dict:
        """The record's ``weights`` section: file, sha256, format, remapping, and the note that it was not trained
        here."""
        return {"file": str(self.path), "sha256": self.sha256, "format": self.format,
                "remap": {"strip_prefix": self.strip_prefix, "add_prefix": self.add_prefix},
                **({"inside": self.inside} if self.inside else {}), "note": weights_note(self.path, self.sha256)}


def weights_note(path: str | Path, sha256: str) -> str:
    """``weights from FILE (sha256 abc...), not trained here``: what records and leaderboards say."""
    return f"weights from {Path(path).name} (sha256 {sha256[:12]}), not trained here"


def convert_hint(path: Path) -> str:
    """How to turn a pickled checkpoint into a safetensors file, on a machine where it is trusted."""
    target = path.with_suffix(".safetensors").name
    code = (f"import torch, safetensors.torch as st; obj = torch.load({json.dumps(str(path))}, weights_only=False); "
            'sd = obj.state_dict() if hasattr(obj, "state_dict") else obj; '
            f"st.save_file({{k: v.contiguous() for k, v in sd.items()}}, {json.dumps(target)})")
    return f"python -c {shlex.quote(code)}"


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsFile]:
    """The tensors of a weights file by name, and what was read; raises :class:`WeightsError` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found: give the path of a "
                                f"{' or '.join(WEIGHT_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format {path.suffix or '(no suffix)'!r}: give a .safetensors file "
                           "or a PyTorch state dict saved as .pt or .pth")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        raise WeightsError(f"{path} is empty: download or copy the weights again")
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head[:8]):  # no weights file starts so
        shown = head.strip()[:24].decode("ascii", "replace")
        raise WeightsError(f"{path} is text ({shown!r}...), not weights: probably a web page or an error message saved "
                           "in place of the file; download it again")
    sha256 = file_sha256(path)
    if suffix in SAFETENSORS_SUFFIXES:
        tensors, inside, kind = _read_safetensors(path), "", "safetensors"
    else:
        tensors, inside = _state_dict(_read_pickle(path), path)
        kind = "pytorch state dict (weights_only)"
    return tensors, WeightsFile(path, sha256, kind, inside=inside)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except SafetensorError as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc}): download or copy it again") from None


def _read_pickle(path: Path) -> object:
    """``torch.load(path, weights_only=True)``: tensors and containers only; anything else is refused unread."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pickle protocol notes: the outcome is reported below
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        needs = next((line for line in lines if "GLOBAL" in line), None)
        if needs is None:
            raise WeightsError(f"{path} is not a readable PyTorch file ({_reason(lines)}): download or copy it again, "
                               "or save the weights with torch.save(model.state_dict(), FILE)") from None
        raise WeightsError(
            f"{path} is not a plain state dict: loading it needs full unpickling ({needs.rstrip('.')}), which can "
            "run any code the file names, so bench refuses it without running it. If you trust the file, convert it "
            f"once on a machine where that is safe: {convert_hint(path)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, struct.error, KeyError, IndexError, TypeError) as exc:
        # what torch's restricted unpickler and zip reader raise on truncated or corrupt files
        raise WeightsError(f"{path} is not a readable PyTorch file ({type(exc).__name__}: "
                           f"{_reason(str(exc).splitlines()) or 'truncated'}): download or copy it again") from None


def _reason(lines: list[str]) -> str:
    """The most telling line of a torch.load error: the unpickler's own words, else its first line."""
    told = [line for line in lines if line and not line.startswith(("Weights only load failed", "Please file",
                                                                       "Check the documentation"))]
    return (told or [""])[0].rstrip(".")


def _tensors(value: object) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _state_dict(loaded: object, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in what ``torch.load`` returned: the object itself, or the one dict of tensors inside it (as
    releases save ``{"model": state_dict, "epoch": ...}``); the key it was found under."""
    if _tensors(loaded):
        return dict(loaded), ""
    if isinstance(loaded, dict):
        inner = [k for k, v in loaded.items() if _tensors(v)]
        if len(inner) == 1:
            return dict(loaded[inner[0]]), str(inner[0])
        keys = ", ".join(map(repr, list(loaded)[:8]))
        problem = (f"it holds several dicts of tensors ({', '.join(map(repr, inner))})" if inner
                   else f"none of its entries is a dict of tensors (keys: {keys})")
        raise WeightsError(f"{path} is a dict but not a state dict, and {problem}: save the model's weights alone with "
                           "torch.save(model.state_dict(), FILE)")
    raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state dict: save the model's weights with "
                       "torch.save(model.state_dict(), FILE)")


def remap_keys(tensors: dict[str, torch.Tensor], strip_prefix: str | None = None,
               add_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensor names with ``strip_prefix`` removed where present (e.g. DataParallel's ``module.``), then
    ``add_prefix`` put in front of every name."""
    return {f"{add_prefix or ''}{k.removeprefix(strip_prefix) if strip_prefix else k}": v for k, v in tensors.items()}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED])
    return shown + (f", ... ({len(keys) - LISTED} more)" if len(keys) > LISTED else "")


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str:
    """A remapping that would fix the names, when one prefix explains the difference."""
    if not missing or not unexpected:
        return ""
    first = unexpected[0].split(".", 1)[0] + "."
    if all(k.startswith(first) for k in unexpected) and {k.removeprefix(first) for k in unexpected} >= set(missing):
        return f" The file's names start with {first!r}: set strip_prefix: {first!r}."
    own = missing[0].split(".", 1)[0] + "."
    if all(k.startswith(own) for k in missing) and {own + k for k in unexpected} >= set(missing):
        return f" The model's names start with {own!r} and the file's do not: set add_prefix: {own!r}."
    return ""


def fit_problems(own: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """What keeps tensors of the ``found`` shapes (by name) from fitting a model whose state has the ``own`` shapes:
    the missing and unexpected names and the shapes that differ, each a phrase; empty when they fit."""
    missing, unexpected = sorted(set(own) - set(found)), sorted(set(found) - set(own))
    shapes = [f"{k} (file {found[k]}, model {own[k]})" for k in own if k in found and found[k] != own[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key{'s' * (len(missing) > 1)} ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)} ({_listed(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape{'s differ' if len(shapes) > 1 else ' differs'}: {_listed(shapes)}")
    return problems


def check_fit(model: nn.Module, tensors: dict[str, torch.Tensor], source: str, name: str = "") -> None:
    """Raise :class:`WeightsError` naming every missing and unexpected key and every shape that differs, in one
    line, unless ``tensors`` are exactly ``model``'s state dict names and shapes (``name``: the detector's)."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = fit_problems(own, {k: tuple(v.shape) for k, v in tensors.items()})
    if problems:
        hint = _prefix_hint(sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own)))
        target = f"detector {name!r}" if name else type(model).__name__
        raise WeightsError(f"{source} does not fit {target}: {'; '.join(problems)}. Check the detector "
                           f"and its kwargs, or remap the names (strip_prefix / add_prefix).{hint}")


def load_weights(model: nn.Module, path: str | Path, strip_prefix: str | None = None,
                 add_prefix: str | None = None, name: str = "") -> WeightsFile:
    """Load a weights file into ``model`` (of detector ``name``) strictly (see :func:`check_fit`); returns what was
    read."""
    tensors, read = read_weights(path)
    tensors = remap_keys(tensors, strip_prefix, add_prefix)
    check_fit(model, tensors, str(path), name)
    model.load_state_dict(tensors, strict=True)
    return WeightsFile(read.path, read.sha256, read.format, strip_prefix, add_prefix, read.inside)


def probability_to_logit(probability: float) -> float:
    """The logit of a probability in (0, 1): the threshold on detector outputs that a probability threshold is."""
    if not 0 < probability < 1:
        raise WeightsError(f"a probability threshold must lie strictly between 0 and 1 (got {probability})")
    return math.log(probability / (1 - probability))


def logit_to_probability(logit: float) -> float:
    """The probability ``sigmoid(logit)``, without overflow."""
    if logit >= 0:
        return 1 / (1 + math.exp(-logit))
    return math.exp(logit) / (1 + math.exp(logit))
