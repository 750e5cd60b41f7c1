"""Presets of the jobs: the study's configuration (``ExperimentConfig``, ``PRESETS``, ``make_config``).

The train / fine-tune jobs read their bag-model budgets from ``PRESETS["full"]``. Budgets are sized
for 2 shared CPU cores: the full preset on Beauty was designed to finish in < 30 min.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ecaug_feast.errors import EcaugError
from recommender.study_methods import DISTILL_KEYS, METHODS, MODEL_METHODS, SEQ_AUG_KEYS

# Where the study reads its training examples (see ecaug_feast.jobs.study_data):
# feast = each fraction's features written to a private Feast repo and read back with
# get_historical_features (the one example path); memory = the same features built in pandas
# (a shortcut a parity test holds equal row for row).
SOURCES = ("feast", "memory")
SEQ_PROTOCOLS = ("finetune", "pretrain")
SEQ_TARGETS = ("all", "real")
SEQ_INFERENCE = ("real", "expanded")
SEQ_TEACHERS = ("none", "recommender")


@dataclass
class ExperimentConfig:
    dataset: str = "beauty"
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    seeds: int = 3
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5])  # 0 is always a candidate
    pool_cap: int = 20_000  # at most this many pool rows; a mix never duplicates pool rows
    max_users: int | None = None  # subsample users (quick preset)
    valid_users: int | None = 8000  # validation users used for early stopping / ratio choice (speed)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig for real-only
    finetune: dict[str, Any] = field(default_factory=dict)  # TrainConfig for fine-tunes
    finetune_mode: str = "full"
    gan: dict[str, Any] = field(default_factory=dict)  # GANConfig overrides
    workers: int = 2
    model_type: str = "sequence"  # sequence (self-attention user tower) | bag (mean-of-bags two-tower)
    seq_model: dict[str, Any] = field(default_factory=dict)  # SeqConfig overrides
    seq_train: dict[str, Any] = field(default_factory=dict)  # SeqTrainConfig overrides
    seq_finetune: dict[str, Any] = field(default_factory=dict)  # SeqTrainConfig overrides for fine-tunes
    seq_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0])  # augmented histories per real one
    seq_gan: dict[str, Any] = field(default_factory=dict)  # SeqGANConfig overrides (pseudo_prior, gan_augmented)
    seq_aug: dict[str, Any] = field(default_factory=dict)  # SeqAugmentConfig scalar overrides
    # how augmented histories enter the sequence model (SEQ_PROTOCOLS): "finetune" = real-only's
    # model fine-tuned on real + augmented; "pretrain" = ASReP's order: a fresh model trained on
    # real + augmented, then fine-tuned on the real histories alone
    seq_protocol: str = "finetune"
    # which items of a generated history are next-item targets (SEQ_TARGETS): "all"; or "real" =
    # generated items are context only (expansions train on their real items; whole synthetic users
    # leave the pool). pseudo_prior and gan_augmented only: seq_ops' histories hold real items.
    seq_targets: str = "all"
    # what the user tower reads at validation / test time (SEQ_INFERENCE): "real" histories; or
    # "expanded" (ASReP's evaluation, which reads the augmented training sequences): an expanded
    # user reads its generated earlier items + its real history, for every augmented candidate and
    # for real-only's model as one more candidate; real-only with real histories stays candidate 0.
    # pseudo_prior and gan_augmented only (the methods that prepend generated items).
    seq_inference: str = "real"
    # where gan_augmented's expansions come from (SEQ_TEACHERS): "none" = the generator's network
    # (earlier items, prepended); "recommender" = real-only's sequence model as the teacher:
    # continuations drawn from its next-item scores under the generator's sampling settings (the
    # transition mix, epsilon, attribute coherence), gated like the generator's own
    seq_teacher: str = "none"
    # with seq_teacher="recommender": rounds of teaching. Round k > 1 draws a new pool from the model
    # validation chose in round k - 1 (born-again distillation: a better teacher each round) and
    # trains it as round 1 did; validation chooses among every round's candidates and real-only.
    # Stops early when a round's model did not beat the one before on validation.
    seq_teacher_rounds: int = 1
    # knowledge distillation (SeqTrainConfig ``distill``, ``distill_temperature``): with a weight > 0,
    # the teacher's soft next-item distribution joins the loss of every model trained for
    # gan_augmented under seq_teacher="recommender" (the teacher is the one that drew the pool), and
    # of the ``distilled`` control (the same teaching on the real histories alone, no pool)
    seq_distill: dict[str, Any] = field(default_factory=dict)
    source: str = "feast"  # where training examples are read: feast | memory (SOURCES)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(
        fractions=[0.1, 0.25, 1.0],
        seeds=3,
        ratios=[0.5],
        model=dict(embedding_dim=64, hidden_dim=256, out_dim=64, temperature=0.1, dropout=0.3),
        train=dict(epochs=8, patience=2, batch_size=1024, lr_sparse=0.04, lr_dense=2e-3),
        finetune=dict(epochs=2, patience=1, batch_size=1024, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=500, eval_every=100, patience=3),
        seq_model=dict(),  # SeqConfig defaults: d=64, 2 blocks, 1 head, dropout 0.5, max_len 50
        seq_train=dict(epochs=60, patience=5, batch_size=128, lr=2e-3, threads=1),
        # one augmented size (1 history per real one; 0 = keep real-only is always a candidate) and a
        # 10-epoch fine-tune: a 3-seed, 2-fraction Beauty study then fits ~1.5 h on 2 cores
        seq_finetune=dict(epochs=10, patience=2),
        seq_ratios=[1.0],
        seq_gan=dict(threads=1),
    ),
    "quick": dict(
        fractions=[0.25, 1.0],
        seeds=3,
        max_users=1500,
        ratios=[0.5],
        pool_cap=3000,
        model=dict(embedding_dim=16, hidden_dim=32, out_dim=16, temperature=0.1, dropout=0.1, user_buckets=4096),
        train=dict(epochs=3, patience=1, batch_size=256, lr_sparse=0.05, lr_dense=2e-3),
        finetune=dict(epochs=1, patience=1, batch_size=256, lr_sparse=0.02, lr_dense=1e-3),
        gan=dict(max_steps=60, eval_every=30, patience=2, batch_size=200, eval_rows=500, calib_rows=2000),
        seq_model=dict(embedding_dim=16, num_blocks=1, max_len=20, dropout=0.2),
        seq_train=dict(epochs=3, patience=1, batch_size=64, lr=2e-3, threads=1),
        seq_finetune=dict(epochs=2, patience=1),
        seq_ratios=[0.5],
        seq_gan=dict(embedding_dim=32, num_layers=1, mle_epochs=3, adv_steps=10, adv_batch=64, threads=1),
    ),
}


def make_config(preset: str = "full", **overrides: Any) -> ExperimentConfig:
    """A preset with ``overrides`` (None values keep the preset's), checked: one-line errors."""
    if preset not in PRESETS:
        raise EcaugError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    base = dict(PRESETS[preset])
    gan = overrides.pop("seq_gan", None)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if gan is not None:  # generator settings go over the preset's (its sizes, one thread), not in their place
        from dataclasses import fields

        from ecaug_feast.synth.seq_gan import SeqGANConfig

        known = {f.name for f in fields(SeqGANConfig)}
        if not isinstance(gan, dict) or set(gan) - known:
            raise EcaugError(f"--seq-gan: unknown setting(s) {sorted(set(gan) - known) if isinstance(gan, dict) else gan!r} "
                             f"(SeqGANConfig has {', '.join(sorted(known))})")
        base["seq_gan"] = {**base.get("seq_gan", {}), **gan}
        try:
            SeqGANConfig(**base["seq_gan"])
        except (TypeError, ValueError) as exc:
            raise EcaugError(f"--seq-gan: {exc}") from None
    kind = base.get("model_type", "sequence")
    if kind not in MODEL_METHODS:
        raise EcaugError(f"--model must be one of {', '.join(MODEL_METHODS)}, got {kind!r}")
    for key, choices in (("source", SOURCES), ("seq_protocol", SEQ_PROTOCOLS), ("seq_targets", SEQ_TARGETS),
                         ("seq_inference", SEQ_INFERENCE), ("seq_teacher", SEQ_TEACHERS)):
        if base.get(key, choices[0]) not in choices:
            raise EcaugError(f"--{key.replace('_', '-')} must be one of {', '.join(choices)}, got {base[key]!r}")
    allowed = MODEL_METHODS[kind]
    dist = _numbers_object("--seq-distill", base.get("seq_distill") or {}, DISTILL_KEYS)
    distilling = float(dist.get("distill", 0)) > 0
    if (distilling and float(dist["distill"]) > 1) or float(dist.get("distill_temperature", 1)) <= 0:
        raise EcaugError(f"--seq-distill: distill must lie in (0, 1] and distill_temperature be > 0, got {dist!r}")
    if dist and not distilling:
        raise EcaugError("--seq-distill: set distill > 0 (the weight of the teacher's soft targets)")
    if distilling and base.get("seq_teacher", "none") != "recommender":
        raise EcaugError("--seq-distill needs --seq-teacher recommender (the teacher is real-only's model)")
    # the distilled control runs only when distilling (without a teacher it would be real-only again)
    base.setdefault("methods", [m for m in allowed if m != "distilled" or distilling])
    if "distilled" in base["methods"] and not distilling:
        raise EcaugError("method distilled needs --seq-distill '{\"distill\": <weight>}' and --seq-teacher recommender")
    unknown = [m for m in base["methods"] if m not in METHODS]
    if unknown:
        raise EcaugError(f"unknown method(s) {unknown} (choose from {', '.join(METHODS)})")
    other = [m for m in base["methods"] if m not in allowed]
    if other:
        need = "bag" if kind == "sequence" else "sequence"
        what = "feature rows, which the sequence model" if kind == "sequence" else "histories, which the bag model"
        raise EcaugError(f"method(s) {', '.join(other)} need --model {need}: they generate {what} does not read "
                         f"(it can be studied with {', '.join(allowed)})")
    for f in base.get("fractions", []):
        if not 0 < float(f) <= 1:
            raise EcaugError(f"fractions must lie in (0, 1], got {f}")
    if int(base.get("seq_teacher_rounds", 1)) < 1:
        raise EcaugError("--seq-teacher-rounds must be >= 1")
    if int(base.get("seq_teacher_rounds", 1)) > 1 and base.get("seq_teacher", "none") != "recommender":
        raise EcaugError("--seq-teacher-rounds > 1 needs --seq-teacher recommender (the rounds re-teach from the chosen model)")
    if int(base.get("seeds", 3)) < 1:
        raise EcaugError("seeds must be >= 1")
    if not base.get("seq_ratios") or any(not 0 < float(r) <= 100 for r in base["seq_ratios"]):
        raise EcaugError(f"--seq-ratios: expected numbers in (0, 100], got {base.get('seq_ratios')!r}")
    _numbers_object("--seq-aug", base.get("seq_aug", {}), SEQ_AUG_KEYS)
    return ExperimentConfig(**base)


def _numbers_object(flag: str, obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``obj`` if it is a dict of numbers whose keys are all in ``keys``; else a one-line error."""
    if not isinstance(obj, dict) or set(obj) - set(keys) or not all(isinstance(v, (int, float)) for v in obj.values()):
        raise EcaugError(f"{flag}: expected a JSON object of numbers with keys from {', '.join(keys)}, got {obj!r}")
    return obj
