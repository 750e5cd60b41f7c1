"""The study's methods: each a small :class:`Method` with its own config.

A sequence method names the pool builder of ``ecaug augment`` (``jobs.augment_seq.POOLS``) that
makes its extra histories, the generator settings it changes, whether the real-only model is its
teacher, and the fine-tune protocol (``jobs.finetune.PROTOCOLS``) that trains on the pool. Every
pool holds the same number of histories (``expansions`` x the real users with fewer than
``expand_below`` items, ``jobs.augment_seq.pool_size``): the comparisons are size-matched. Names
say what a method is: only a pool from an adversarially trained generator is ``gan_augmented``
(the real-only model refined against the discriminator, ``synth.seq_refine``); the same pool
without that stage is ``gan_no_adversarial``.

Bag-model methods (``model: bag``, extra feature rows) are the secondary study (``study.bag``).
The ``cold_*`` methods run only in a cold-item protocol (``cold_frac``; ``study.cold``): which
model they train (``COLD_MODELS``) and the item generator whose vectors stand in for cold items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ecaug_feast.errors import EcaugError


@dataclass(frozen=True)
class Method:
    name: str
    doc: str
    model: str = "sequence"          # which recommender reads it: sequence | bag
    stages: str = "pool"             # baseline (no training) | once (real-only) | twice (real_twice) | pool
    pool: str | None = None          # jobs.augment_seq.POOLS key (stages "pool")
    protocol: str = "pretrain"       # jobs.finetune.PROTOCOLS: how the pool is trained on
    teacher: bool = False            # the real-only checkpoint is the pool's teacher
    gan: dict[str, Any] = field(default_factory=dict)  # SeqGANConfig settings this method fixes
    # a cold-item method (stages "cold", protocols with cold_frac): the model it trains
    # (item_tower, use_attributes, id_dropout: true = the protocol's) and the item generator
    # (a key of synth.item_gen.ITEM_GENERATORS) whose vectors replace the cold items' rows
    cold: dict[str, Any] = field(default_factory=dict)
    refine: bool = False             # the adversarial stage: the teacher refined against the discriminator
                                     # (the protocol's ``refine`` settings, synth.seq_refine) before drawing
    refine_settings: dict[str, Any] = field(default_factory=dict)  # RefineConfig settings over the protocol's


_FORWARD = {"reverse": False, "adversarial": False}

_SEQ = [
    Method("popularity", "items by training count", stages="baseline"),
    Method("real_only", "the sequence model trained once on the real histories", stages="once"),
    Method("real_twice", "control for the extra stage: pre-trained then fine-tuned on the real histories alone, "
                         "the augmented methods' stages and epochs", stages="twice"),
    Method("self_distill", "continuations sampled from the real-only model itself; no generator, labeler or "
                           "discriminator", pool="self_distill", teacher=True),
    # the GAN method and its ablations: continuations of the real-only model (the best maximum-
    # likelihood next-item model) under the generator's sampling settings; the generator network
    # itself only lends the labeler its item vectors, so it runs forward and without its own
    # adversarial phase
    Method("gan_augmented", "the real-only model refined against a discriminator under a KL penalty to itself "
                            "(the adversarial stage), its continuations labeler-filtered",
           pool="gan", teacher=True, refine=True, gan=_FORWARD),
    Method("gan_no_labeler", "ablation: gan_augmented's refined continuations, no labeler filter", pool="gan_no_labeler",
           teacher=True, refine=True, gan=_FORWARD),
    # the product default from 2026-12-05 (second session; the rule of docs/results/default-choice.md
    # applied to 25 and 100 % only) to the third session, when the rule's full cells chose
    # distill_priors; config refine + keep: discriminator draws it
    Method("gan_disc_select", "the product default of the second session: gan_augmented's pool, the histories kept chosen by the "
                              "adversarial stage's discriminator (the most real-looking) instead of at random",
           pool="gan_disc_select", teacher=True, refine=True, gan=_FORWARD),
    # gan_disc_select's ablations: its labeler, and its policy updates (the stage's discriminator still
    # trains, against the unrefined teacher's continuations: the selector alone)
    Method("gan_disc_select_no_labeler", "ablation: gan_disc_select without the labeler filter: the same 1.5x draw "
                                         "unfiltered, the discriminator's most real-looking kept",
           pool="gan_disc_select_no_labeler", teacher=True, refine=True, gan=_FORWARD),
    Method("gan_disc_select_no_adversarial", "ablation: gan_disc_select without the policy updates (the stage at "
                                             "lr 0): the real-only model's own continuations, its discriminator "
                                             "trained against them as in the stage, its pick kept",
           pool="gan_disc_select", teacher=True, refine=True, refine_settings={"lr": 0.0}, gan=_FORWARD),
    Method("gan_no_adversarial", "ablation: gan_augmented without the adversarial stage: the real-only model's own "
                                 "continuations, labeler-filtered (self_distill + the labeler)",
           pool="gan", teacher=True, gan=_FORWARD),
    # what `ecaug augment` runs by default with a teacher (jobs.augment_seq.TEACHER_DEFAULTS): the
    # choose half's pick by docs/results/default-choice.md over 10, 25 and 100 % (the default until
    # 2026-12-05 too, then chosen by test means): gan_no_adversarial's settings under a name that says what it
    # is (SAME_SETTINGS)
    Method("distill_priors", "the product default: the real-only model's continuations steered by the data's "
                             "item transitions and attribute coherence (the generator's sampling priors), "
                             "labeler-filtered; no adversarial stage (the settings of gan_no_adversarial)",
           pool="gan", teacher=True, gan=_FORWARD),
    # the labeler's part in the product default: its pool unfiltered (the gan_no_labeler builder, no stage)
    Method("distill_priors_no_labeler", "ablation: distill_priors without the labeler filter (the teacher's "
                                        "continuations under the sampling priors, unfiltered)",
           pool="gan_no_labeler", teacher=True, gan=_FORWARD),
    # the product default before 2026-12-05 (no transition mix): Beauty -10.9 %, Toys +17.9 % under seq-study-6k
    Method("distill_labeled", "the product default before 2026-12-05: distill_priors without the transition mix",
           pool="gan", teacher=True, gan={"reverse": False, "transition_mix": 0.0}),
    Method("seq_ops", "crop / mask / reorder / insert of short real histories", pool="seq_ops"),
    Method("slide_window", "prefixes of real histories (sliding window)", pool="slide_window"),
    Method("reppad", "RepPad (RecSys 2024): each short history repeated into its padding", pool="reppad"),
    Method("pseudo_prior", "ASReP: earlier items from a reversed transformer, MLE only", pool="pseudo_prior"),
    # the cold-item study (issue 34; a protocol with cold_frac)
    Method("cold_popularity", "cold items: items by training count (a cold item has none)", stages="cold",
           cold={"model": None}),
    Method("cold_id_only", "cold items: the sequence model with id embeddings only; a cold item's row is untrained "
                           "(the floor)", stages="cold", cold={"model": "id"}),
    Method("cold_attr_tower", "cold items: item tower from attributes, id dropped at random in training "
                              "(DropoutNet-style); a cold item is scored by its attributes alone", stages="cold",
           cold={"model": "attr"}),
    Method("cold_gar", "cold items: the id-only model with the cold items' rows generated from their attributes by "
                       "the adversarial item generator (GAR, synth.item_gen)", stages="cold",
           cold={"model": "id", "generator": "gar"}),
]
COLD_MODELS: dict[str, dict[str, Any]] = {
    "id": {"item_tower": "id", "use_attributes": False},
    "attr": {"item_tower": "attr", "use_attributes": True, "id_dropout": True},
}
_BAG = [
    Method("popularity", "items by training count", model="bag", stages="baseline"),
    Method("real_only", "the bag two-tower trained once on real examples", model="bag", stages="once"),
    Method("column_gan", "column GAN + labeler + gates (feature rows)", model="bag", pool="column_gan", protocol="finetune"),
    Method("oversample", "copies of sparse users' rows", model="bag", pool="oversample", protocol="finetune"),
    Method("smote", "SMOTE-style interpolation of example rows", model="bag", pool="smote", protocol="finetune"),
]

METHODS: dict[str, Method] = {m.name: m for m in _SEQ}


def _same_settings(methods: list[Method]) -> dict[str, str]:
    """Later name -> first name, for methods that differ only in name and doc: one setting under
    two names (the product's plain name and the study's ablation name)."""
    first: dict[tuple[Any, ...], str] = {}
    out: dict[str, str] = {}
    for m in methods:
        key = (m.model, m.stages, m.pool, m.protocol, m.teacher, m.refine, repr(sorted(m.gan.items())),
               repr(sorted(m.cold.items())), repr(sorted(m.refine_settings.items())))
        if key in first:
            out[m.name] = first[key]
        else:
            first[key] = m.name
    return out


# a protocol may list one of each pair, not both (it would train the same pool twice)
SAME_SETTINGS: dict[str, str] = _same_settings(_SEQ)
BAG_METHODS: dict[str, Method] = {m.name: m for m in _BAG}


def methods_for(model: str) -> dict[str, Method]:
    return BAG_METHODS if model == "bag" else METHODS


def check_methods(names: Any, model: str, source: str = "protocol") -> None:
    """Every name is a method of ``model``'s registry; else one-line error."""
    reg = methods_for(model)
    bad = [m for m in names if m not in reg]
    if bad or not names:
        other = METHODS if model == "bag" else BAG_METHODS
        hint = f" ({', '.join(m for m in bad if m in other)} need model {'sequence' if model == 'bag' else 'bag'})" \
            if any(m in other for m in bad) else ""
        raise EcaugError(f"{source}: unknown method(s) {bad or '(none given)'} for model {model}{hint} "
                         f"(choose from {', '.join(reg)})")
    twice = [f"{a} and {b}" for a, b in SAME_SETTINGS.items() if a in names and b in names]
    if twice:
        raise EcaugError(f"{source}: method(s) {', '.join(twice)} are one setting under two names: list one")


def check_cold(names: Any, model: str, cold: bool, source: str = "protocol") -> None:
    """Cold-item methods run only in a cold-item protocol (``cold_frac`` set) and only they do;
    else one-line error."""
    reg = methods_for(model)
    mixed = [n for n in names if (reg[n].stages == "cold") != cold]
    if mixed:
        need = "need cold_frac (a cold-item protocol)" if not cold else "do not run in a cold-item protocol (cold_frac set)"
        raise EcaugError(f"{source}: method(s) {', '.join(mixed)} {need}")


def check_adversarial(names: Any, model: str, refine: dict[str, Any], source: str = "protocol") -> None:
    """A method that claims the adversarial stage (``refine``) must get refinement steps:
    ``refine: {steps: 0}`` would make ``gan_augmented`` the unrefined pool under the adversarial
    name (``gan_no_adversarial`` is that ablation). Else one-line error."""
    reg = methods_for(model)
    steps = (refine or {}).get("steps")
    for n in names:
        if reg[n].refine and steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise EcaugError(f"{source}: refine steps {steps!r}: method {n} claims the adversarial stage and needs "
                             "steps >= 1 (gan_no_adversarial is the ablation without it)")
