"""Checkpoints: ``<dir>/model.pt`` (a plain, unsharded state dict) + ``<dir>/config.json``.

``<dir>/catalog.pt`` holds the item catalog (attribute ids per item as CSR tensors) the user tower
needs to encode ``recent_items`` (their attributes form the ``recent_attributes`` bag).

``config.json``::

    {"format": "ecaug-two-tower", "version": 1,
     "model": {ModelConfig fields},     # enough to rebuild TwoTower and encode its inputs
     "train": {...}, "metrics": {...}, "data": {...}}   # provenance, free-form

``data.read_at`` (:data:`DATA_READ_AT`, UTC ISO 8601): when the job that wrote the checkpoint read
its training data, the model's training-data cut-off (events a later append published are not in
it). Recorded, not taken from a file's mtime: an mtime moves when a checkpoint is copied or restored.

Written to a temporary sibling directory and renamed, so a reader never sees half a checkpoint.
Loaded with ``torch.load(weights_only=True)``: a checkpoint can hold tensors only, never code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ecaug_feast.errors import EcaugError
from ecaug_feast.names import assert_strict_child, check_name, owned_child
from ecaug_feast.paths import models_dir

from recommender.batching import ItemCatalog
from recommender.item_keys import ItemKeys
from recommender.model import JsonConfig, ModelConfig, TwoTower
from recommender.seq_model import SeqConfig, SeqTwoTower

FORMAT = "ecaug-two-tower"
VERSION = 1
DATA_READ_AT = "read_at"  # the ``data`` section's training-data cut-off (module docstring)

# the model kinds a checkpoint's ``model.kind`` names -> (config class, model class); the kind is
# read here only (``model_kind``), everything else asks the config class (``cfg.sequential``)
MODEL_KINDS: dict[str, tuple[type[JsonConfig], type[torch.nn.Module]]] = {
    "sequence": (SeqConfig, SeqTwoTower),  # self-attention user tower over the ordered history
    "bag": (ModelConfig, TwoTower),        # mean-of-bags two-tower (older checkpoints carry no kind)
}


class CheckpointError(EcaugError):
    """A checkpoint that is missing, corrupt or does not match the model it claims to be."""


def named_dir(name: str) -> Path:
    """``<state>/models/<name>`` for a checkpoint name (checked: one safe path component)."""
    return owned_child(models_dir(), name, "checkpoint name")


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, its ``model.pt``, or a bare name under ``<state>/models/``."""
    raw = str(path)
    if raw in ("", ".", "..") or (os.sep not in raw and not Path(raw).expanduser().exists()):
        return named_dir(raw)  # a bare name: checked, then looked up under <state>/models/
    p = Path(path).expanduser()
    if p.name in ("model.pt", "config.json"):
        p = p.parent
    return p


def _is_checkpoint_dir(d: Path) -> bool:
    try:
        meta = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    cfg: JsonConfig,
    catalog: ItemCatalog,
    item_keys: ItemKeys | None = None,
    **extra: Any,
) -> Path:
    """Write ``state_dict`` + config atomically; returns the directory. ``extra`` goes into
    config.json; ``item_keys`` (a model trained from a shop's repo) into ``item_keys.json`` of
    the same directory, before it is renamed into place (a reader never sees one without it)."""
    given = Path(path).expanduser()
    check_name(given.name, "checkpoint name")  # "..", "" (and "/" as a name) never get here
    final = given.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    assert_strict_child(given.parent, final)
    if final.exists() and not _is_checkpoint_dir(final):
        # e.g. `--name .` arrives as <state>/models itself: never replace a folder that is not
        # a checkpoint (it may hold every other checkpoint, or all of the state)
        raise CheckpointError(f"{final}: exists and is not an ecaug checkpoint; refusing to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        torch.save({k: t.detach().cpu().contiguous() for k, t in state_dict.items()}, tmp / "model.pt")
        torch.save(
            {
                "attr_values": torch.from_numpy(catalog.attr_values.copy()),
                "attr_offsets": torch.from_numpy(catalog.attr_offsets.copy()),
                "num_items": torch.tensor(catalog.num_items),
                "num_attributes": torch.tensor(catalog.num_attributes),
            },
            tmp / "catalog.pt",
        )
        meta = {"format": FORMAT, "version": VERSION, "model": cfg.to_dict(), **extra}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, default=str))
        if item_keys is not None:
            item_keys.save(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def data_read_now() -> dict[str, str]:
    """``{"read_at": <now, UTC>}`` for a checkpoint's ``data`` section; a job takes it just before
    it reads its training data."""
    return {DATA_READ_AT: datetime.now(timezone.utc).isoformat()}


def data_read_at(meta: dict[str, Any]) -> datetime | None:
    """The training-data cut-off a checkpoint's ``config.json`` (:func:`read_config`) records, as a
    UTC datetime; None for a checkpoint written before it was recorded (or an unreadable value)."""
    raw = (meta.get("data") or {}).get(DATA_READ_AT) if isinstance(meta.get("data"), dict) else None
    if not isinstance(raw, str):
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint (raises :class:`CheckpointError`)."""
    d = resolve(path)
    cfg_file = d / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{cfg_file}: checkpoint not found (expected model.pt + config.json)")
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_file}: corrupt checkpoint config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file}: not an ecaug two-tower checkpoint (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{cfg_file}: checkpoint version {meta.get('version')} is not supported (expected {VERSION})")
    return meta


def load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model on CPU in eval mode; returns ``(model, config_dict)``.

    ``config_dict["model"]`` holds the :class:`~recommender.model.ModelConfig` fields; the parsed
    dataclass is ``model.cfg`` and the item catalog ``model.catalog``.
    """
    d = resolve(path)
    meta = read_config(d)
    try:
        ConfigCls, ModelCls = model_classes(meta["model"])
        cfg = ConfigCls.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{d / 'config.json'}: bad model config ({exc})") from None
    weights = d / "model.pt"
    if not weights.exists():
        raise CheckpointError(f"{weights}: checkpoint weights missing")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes...
        raise CheckpointError(f"{weights}: corrupt or unsafe checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights}: expected a state dict, got {type(state).__name__}")
    model = ModelCls(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}")
        raise CheckpointError(f"{weights}: weights do not match config.json ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)
    model.eval()
    model.catalog = _load_catalog(d / "catalog.pt")
    return model, meta


def model_kind(model_cfg: dict[str, Any]) -> str:
    """The kind (a key of ``MODEL_KINDS``) a checkpoint's ``model`` section names."""
    if not isinstance(model_cfg, dict):
        raise TypeError("model section is not an object")
    kind = model_cfg.get("kind", "bag")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(MODEL_KINDS)})")
    return kind


def model_classes(model_cfg: dict[str, Any]) -> tuple[type, type]:
    """(config class, model class) for a checkpoint's ``model`` section."""
    return MODEL_KINDS[model_kind(model_cfg)]


def sequential(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``config.json`` (:func:`read_config`) holds a sequence model."""
    try:
        return model_classes(meta.get("model"))[0].sequential
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"bad model config ({exc})") from None


def _load_catalog(path: Path) -> ItemCatalog:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint item catalog missing")
    try:
        c = torch.load(path, map_location="cpu", weights_only=True)
        return ItemCatalog(
            num_items=int(c["num_items"]),
            num_attributes=int(c["num_attributes"]),
            attr_values=c["attr_values"].numpy().astype("int64"),
            attr_offsets=c["attr_offsets"].numpy().astype("int64"),
        )
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt item catalog ({type(exc).__name__}: {exc})") from None
