"""A study's protocol: every setting fixed in one committed file (``--protocol FILE``, YAML or JSON).

Validation users are split in two disjoint halves by a seeded hash of the user id
(:func:`validation_halves`): ``stop`` (every early stop) and ``choose`` (every choice among
candidates, e.g. the pool size). The test split is scored once per (dataset, fraction, seed,
method), after the choices are made; a screen (``screen: true``) never scores it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ecaug_feast.errors import DataValidationError, EcaugError
from ecaug_feast.names import BadNameError, check_name


@dataclass(frozen=True)
class Protocol:
    name: str = "seq-study"
    dataset: str = "beauty"
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    seeds: int = 3
    first_seed: int = 0                # cells run seeds first_seed .. first_seed + seeds - 1 (a study split over runs)
    methods: tuple[str, ...] = ("popularity", "real_only", "real_twice", "self_distill",
                                "gan_augmented", "gan_no_labeler", "gan_no_adversarial", "seq_ops", "slide_window",
                                "reppad", "pseudo_prior")
    model: str = "sequence"            # sequence | bag (the column methods)
    screen: bool = False               # validation only: no test figure is computed or printed
    max_users: int | None = None       # a fixed user subsample (None: all)
    halves_seed: int = 2026            # the hash that splits validation users into stop / choose
    workers: int = 1
    # the recommender: train_real's settings and the epochs of every training stage
    embedding_dim: int = 64
    epochs: int = 60                   # real-only and every pre-training stage (early stopping on `stop`)
    finetune_epochs: int = 10          # every fine-tune stage
    batch_size: int = 128
    # the pools: expansions per short history (candidates, chosen on `choose`) and their shape
    expansions: tuple[int, ...] = (3,)
    expand_below: int = 8
    n_new: int = 2
    generator: dict[str, Any] = field(default_factory=dict)  # SeqGANConfig overrides (gan_* methods)
    refine: dict[str, Any] = field(default_factory=dict)     # RefineConfig overrides (methods with the adversarial stage)
    bootstrap: int = 1000              # resamples for the intervals
    bootstrap_seed: int = 0
    bag: dict[str, Any] = field(default_factory=dict)  # --model bag: ratios, model/train budgets
    # the cold-item study (issue 34): this share of the items made cold by cold_seed
    # (datasets.split.cold_item_split); None: the sequence study
    cold_frac: float | None = None
    cold_seed: int = 2026
    id_dropout: float = 0.5            # cold_attr_tower's DropoutNet rate
    item_generator: dict[str, Any] = field(default_factory=dict)  # the item generator's config (cold_gar)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


# the quick preset: a user subsample and a tiny model, for tests and the demo
QUICK: dict[str, Any] = {"max_users": 400, "seeds": 1, "fractions": [0.5], "embedding_dim": 16, "epochs": 3,
                         "finetune_epochs": 2, "batch_size": 64, "expansions": [1], "bootstrap": 200,
                         "generator": {"embedding_dim": 16, "num_layers": 1, "mle_epochs": 2, "adv_steps": 5, "adv_batch": 32,
                                       "threads": 1},
                         "refine": {"steps": 5, "d_warmup": 5, "prompts": 16}}


def read_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON object from ``path``; unreadable or not an object: one-line error."""
    p = Path(path)
    try:
        obj = yaml.safe_load(p.read_text())  # YAML is a superset of JSON
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataValidationError(p, None, f"not a readable YAML/JSON file ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise DataValidationError(p, None, "expected a mapping of protocol settings")
    return obj


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# each setting's type, checked before any value is used: (test, what it must be)
_LIST = (list, tuple)
_TYPES: dict[str, tuple[Any, str]] = {
    **{k: (_is_int, "an integer") for k in ("seeds", "halves_seed", "workers", "embedding_dim", "epochs", "finetune_epochs",
                                            "batch_size", "expand_below", "n_new", "bootstrap", "bootstrap_seed",
                                            "cold_seed", "first_seed")},
    "cold_frac": (lambda v: v is None or _is_number(v), "a number"),
    "id_dropout": (_is_number, "a number"),
    "item_generator": (lambda v: isinstance(v, dict), "a mapping of the item generator's settings"),
    "max_users": (lambda v: v is None or _is_int(v), "an integer"),
    "name": (lambda v: isinstance(v, str), "a string"), "dataset": (lambda v: isinstance(v, str), "a string"),
    "model": (lambda v: isinstance(v, str), "a string"), "screen": (lambda v: isinstance(v, bool), "true or false"),
    "fractions": (lambda v: isinstance(v, _LIST) and all(_is_number(x) for x in v), "a list of numbers"),
    "expansions": (lambda v: isinstance(v, _LIST) and all(_is_int(x) for x in v), "a list of integers"),
    "methods": (lambda v: isinstance(v, _LIST) and all(isinstance(x, str) for x in v), "a list of method names"),
    "generator": (lambda v: isinstance(v, dict), "a mapping of SeqGANConfig settings"),
    "refine": (lambda v: isinstance(v, dict), "a mapping of RefineConfig settings"),
    "bag": (lambda v: isinstance(v, dict), "a mapping"),
}


def check_types(merged: dict[str, Any], source: str) -> None:
    """Each setting of ``merged`` has its type (a scalar where a list is due, a quoted number...):
    else one-line error naming ``source``, the key and the reason."""
    for k, v in merged.items():
        test, what = _TYPES.get(k, (lambda _: True, ""))
        if not test(v):
            raise EcaugError(f"{source}: {k} must be {what}, got {v!r}")


def make_protocol(base: dict[str, Any] | None = None, *layers: dict[str, Any], source: str = "protocol") -> Protocol:
    """A checked :class:`Protocol` from ``base`` with ``layers`` over it (None values skipped);
    unknown settings or bad values: one-line error naming ``source``."""
    from ecaug_feast.study.registry import check_adversarial, check_cold, check_methods

    known = {f.name for f in fields(Protocol)}
    merged: dict[str, Any] = {}
    for layer in (base or {}, *layers):
        bad = sorted(set(layer) - known)
        if bad:
            raise EcaugError(f"{source}: unknown setting(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
        merged.update({k: v for k, v in layer.items() if v is not None})
    check_types(merged, source)
    if "name" in merged:
        try:
            check_name(merged["name"], "name")
        except BadNameError as exc:
            raise EcaugError(f"{source}: {exc}") from None
    for k in ("fractions", "methods", "expansions"):
        if k in merged:
            merged[k] = tuple(merged[k])
    p = Protocol(**merged)
    if not p.fractions or any(not 0 < float(f) <= 1 for f in p.fractions):
        raise EcaugError(f"{source}: fractions must lie in (0, 1], got {list(p.fractions)}")
    if p.seeds < 1 or p.first_seed < 0 or p.epochs < 1 or p.finetune_epochs < 1 or p.bootstrap < 10:
        raise EcaugError(f"{source}: seeds, epochs and finetune_epochs must be >= 1, first_seed >= 0 and bootstrap >= 10")
    if not p.expansions or any(int(k) < 1 for k in p.expansions):
        raise EcaugError(f"{source}: expansions must be a list of integers >= 1, got {list(p.expansions)}")
    if p.model not in ("sequence", "bag"):
        raise EcaugError(f"{source}: model must be sequence or bag, got {p.model!r}")
    check_methods(p.methods, p.model, source)
    check_cold(p.methods, p.model, p.cold_frac is not None, source)
    if p.cold_frac is not None:
        if not 0 < p.cold_frac < 1 or not 0 <= p.id_dropout < 1:
            raise EcaugError(f"{source}: cold_frac must lie in (0, 1) and id_dropout in [0, 1), got {p.cold_frac}, {p.id_dropout}")
        if tuple(float(f) for f in p.fractions) != (1.0,) or p.model != "sequence":
            raise EcaugError(f"{source}: a cold-item protocol trains on the whole warm history: fractions [1.0], model sequence")
    check_adversarial(p.methods, p.model, p.refine, source)
    return p


def validation_halves(user_ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(stop, choose): boolean masks over ``user_ids``, disjoint, covering all, about half each,
    from a seeded hash (splitmix64) of each id: the same user lands in the same half whatever
    the order, the fraction, the seed of the cell or the method."""
    with np.errstate(over="ignore"):
        z = np.asarray(user_ids, np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    stop = (z & np.uint64(1)) == 0
    return stop, ~stop
