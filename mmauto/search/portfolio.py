"""A portfolio: the first trials of a search are configurations known to be strong for the mix
of input modalities; the oracle explores after them (see `oracles.PortfolioFirst`).

An entry names settings per modality (given to every input of that modality, with hp names
relative to the input: "encoder", "tfidf/width") and shared ones ("fusion", "learning_rate").
It is used when the inputs include one of its `modalities` (all of them with `needs_all`; at
least `min_inputs` inputs of those modalities, counted together, with `min_inputs`) and, with
`heads`, only for those task heads. Settings
that exist only for one task's head ("match_weight": binary) go in `per_head`, by head name.
Resolved against a search space, an entry is merged over the space's defaults; a value the
space does not allow falls back to the default (a width the manifest pinned stays pinned),
except an encoder or fusion choice, the entry's point: one the manifest rules out drops the
entry. Entries are tried in the order written, at most MAX_ENTRIES of them per search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# The trial value that marks an entry trained along a cosine to its last epoch (Entry.anneal),
# kept by its replicas; like oracles.REPLICA, not a hyperparameter: the oracles never draw it.
ANNEAL = "anneal"

# Portfolio trials per search at most: the rest of the budget is the oracle's.
MAX_ENTRIES = 3


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    modalities: tuple[str, ...]  # used when the inputs include one of these (all: needs_all)
    per_modality: Mapping[str, Mapping[str, object]]  # modality -> {hp name relative to the input: value}
    shared: Mapping[str, object]  # hp name -> value
    why: str
    needs_all: bool = False
    min_inputs: int = 1  # inputs of `modalities` (together) the entry needs: 2 for one that compares inputs
    per_head: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)  # head name -> {hp name: value}
    heads: tuple[str, ...] = ()  # used only for these task heads (a multi-target model: its primary's); empty: any
    # Trained along a cosine to 0 over train.epochs, no early stopping (ANNEAL), unless
    # train.reduce_lr is pinned: for an entry whose best epoch is known to be near the last.
    # True: for any task head; names: for those heads only (where the bench measured it).
    anneal: bool | tuple[str, ...] = False

    def anneals(self, head: str | None) -> bool:
        return self.anneal is True or (isinstance(self.anneal, tuple) and head in self.anneal)


# The lead fills in the bench's figures for each entry ("why"); values must exist in the
# encoders' and fusions' choices (see mmauto/encoders/*, mmauto/fusion/*, hypermodel.build),
# or they fall back to the space's defaults.
PORTFOLIO: tuple[Entry, ...] = (
    Entry(
        "text+table: tfidf, ft_transformer, transformer fusion",
        ("text", "tabular"),
        {"text": {"encoder": "tfidf", "tfidf/width": 64}, "tabular": {"encoder": "ft_transformer", "ft_transformer/width": 32}},
        {"fusion": "transformer", "width": 64, "dropout": 0.1, "learning_rate": 1e-3},
        "The best trial on Clothing reviews / Recommended_IND (bench/RESULTS.md: 0.906 test accuracy): "
        "TF-IDF text, an FT-Transformer over the table and transformer fusion.",
        needs_all=True,
    ),
    Entry(
        "text: tfidf, concat (linear-ish)",
        ("text",),
        {"text": {"encoder": "tfidf", "tfidf/width": 64}, "tabular": {"encoder": "mlp", "mlp/width": 64, "mlp/depth": 2}},
        {"fusion": "concat", "concat/depth": 1, "width": 64, "dropout": 0.1, "learning_rate": 3e-3},
        "TF-IDF of n-grams and one linear projection, then one dense layer and the head: the strong "
        "small-data text baseline (nearly a linear model on bag-of-words), cheap and rarely bad.",
    ),
    Entry(
        "image/audio: cnn 32x3",
        ("image", "audio"),
        {"image": {"encoder": "cnn", "cnn/width": 32, "cnn/depth": 3}, "audio": {"encoder": "cnn", "cnn/width": 32, "cnn/depth": 3}},
        {"fusion": "sum", "width": 64, "dropout": 0.1, "learning_rate": 3e-3, "augment": True},
        "The wider, deeper built-in CNN with sum fusion: AV-digits image+audio reached 1.000 test "
        "accuracy with cnn encoders and sum fusion (bench/RESULTS.md). Augmented: on degraded AV-digits this "
        "trial alone went from 0.940 test accuracy to 0.963 (validation 0.947 -> 0.967, log loss 0.166 -> 0.107) "
        "with augmentation and the learning rate halved on plateaus, where either alone gained nothing on test. "
        "A binary label gets the contrastive loss on "
        "its positive rows: on the same-digit task this trial stayed at chance without it and reaches test accuracy "
        "0.907 (validation ROC-AUC 0.969) with weight 0.5; with input heads at weight 1.0 it leaves chance only at "
        "epoch 6, after the trial's warm-up (search/tuner.py): validation 0.903 in 207 s. Annealed over its 20 epochs for a multiclass label: on "
        "degraded AV-digits (two seeds, 1,500 test rows) 0.975 / 0.977 test accuracy against 0.965 for the plateau "
        "schedule, which early stopping ended at 15 epochs in a search; on the same-digit task (binary) annealed it "
        "read validation ROC-AUC 0.856 in 210 s, against 0.969 before (bench/RESULTS.md): not there. "
        "For a multiclass label each encoder learns from its own input head only (`unimodal_encoders`, "
        "model/hypermodel.py), at the least modality dropout searched: on degraded AV-digits the audio head, "
        "which answers rows without the image, read 0.895-0.910 on validation in three draws against 0.838-0.885 "
        "trained through the fused head too, and the fused head gained (test 0.980-0.983 against 0.969-0.977). "
        "bench/missing.py: served without the image 0.904 against the audio-only model's 0.907, and without the "
        "audio 0.789 against the image-only model's 0.786 (bench/RESULTS.md, issue 16).",
        per_head={"binary": {"match_weight": 0.5}, "multiclass": {"unimodal_encoders": True, "modality_dropout": 0.05}},
        anneal=("multiclass",),
    ),
    Entry(
        "image/audio pairs: cnn, pairwise comparison",
        ("image", "audio"),
        {"image": {"encoder": "cnn", "cnn/width": 16, "cnn/depth": 2}, "audio": {"encoder": "cnn", "cnn/width": 16, "cnn/depth": 2}},
        {"fusion": "pairwise", "pairwise/project": "none", "pairwise/depth": 0, "pairwise/vectors": 1, "width": 64,
         "dropout": 0.0, "modality_dropout": 0.05, "learning_rate": 3e-3, "batch_size": 32},
        "Same-digit task (is the spoken digit the one shown? bench/RESULTS.md, issue 14): the best of the "
        "searches with the learning rate kept under 1e-3 (validation ROC-AUC 0.93, test accuracy 0.837), where "
        "the default search found a comparison only in its 10th trial and sums and concatenations stay on the "
        "chance plateau. With each input's own vector appended it is a superset of concat, for labels one input gives. "
        "A binary label gets the contrastive loss on its positive rows (heads/matching.py, weight 0.5): the trial then "
        "leaves chance from the first epochs, and the higher learning rate that left it on the plateau before is now "
        "the better one: test accuracy 0.87 at lr 6.6e-4, 0.90 / 0.90 at 1.5e-3, 0.92 / 0.91 at 3e-3 (two data "
        "seeds; without the loss, at 1.5e-3: 0.79). Since input heads weigh 1.0 first, the rate halved on each early "
        "epoch that did not beat noise kept it at chance (validation 0.55); with the trials' warm-up "
        "(search/tuner.py) it leaves chance at epoch 4-5: validation 0.960 / 0.936 (seeds 42, 1), test 0.863. A wider CNN (32x3) was slower and no better (0.91, 0.88). "
        "Binary labels only: on degraded AV-digits (the digit, 10 classes, which either input says alone) it was the "
        "weakest trial of every 600 s search (validation 0.925-0.933 against the CNN entry's 0.955-0.975) and got "
        "little or no ensemble weight; a replica of the CNN entry in its place raised the ensemble (bench/RESULTS.md).",
        min_inputs=2,
        per_head={"binary": {"match_weight": 0.5}},
        heads=("binary",),
    ),
    Entry(
        "table: mlp 64x2",
        ("tabular",),
        {"tabular": {"encoder": "mlp", "mlp/width": 64, "mlp/depth": 2}},
        {"fusion": "concat", "concat/depth": 1, "width": 64, "dropout": 0.1, "learning_rate": 3e-3},
        "An MLP over the normalised, one-hot table: the usual strong default for small tables.",
    ),
)


# Values that define an entry: when the space rules one out, the entry is not used.
def _defining(name: str) -> bool:
    return name == "fusion" or name.endswith("/encoder")


def entries_for(modalities: Mapping[str, str], portfolio=PORTFOLIO, head: str | None = None) -> list[tuple[Entry, dict]]:
    """The entries used for these inputs (input name -> modality), in order, each with its
    wanted hp values (partial, hp names scoped by input; `head`: the task head's name)."""
    present = set(modalities.values())
    out = []
    for entry in portfolio:
        needed = set(entry.modalities)
        if not (needed <= present if entry.needs_all else needed & present):
            continue
        if sum(m in needed for m in modalities.values()) < entry.min_inputs:
            continue
        if entry.heads and head not in entry.heads:
            continue
        wanted = {**entry.shared, **entry.per_head.get(head, {})}
        for name, modality in modalities.items():
            for key, value in entry.per_modality.get(modality, {}).items():
                wanted[f"{name}/{key}"] = value
        out.append((entry, wanted))
    return out


def valid(hp, value) -> bool:
    """Whether a keras-tuner hyperparameter allows this value."""
    from keras_tuner.src.engine.hyperparameters import hp_types

    if isinstance(hp, hp_types.Fixed):
        return value == hp.value
    if isinstance(hp, hp_types.Boolean):
        return isinstance(value, bool)
    if isinstance(hp, hp_types.Choice):
        return value in hp.values
    if isinstance(hp, (hp_types.Int, hp_types.Float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not hp.min_value <= value <= hp.max_value:
            return False
        return not isinstance(hp, hp_types.Int) or not hp.step or (value - hp.min_value) % hp.step == 0
    return False


def resolve(wanted: Mapping[str, object], space) -> dict | None:
    """The full values of one trial: `wanted` merged over the defaults of `space` (a
    keras-tuner HyperParameters), only active hyperparameters, as the oracles fill them.
    None when the space rules out one of the entry's encoder or fusion choices.

    A wanted name the space does not hold yet is passed on as is: a branch no build has taken
    (keras-tuner learns "pairwise/depth" only once a trial builds the pairwise fusion); the
    build registers it and keeps the populated value. Such names are settings that the
    manifest cannot pin (tests/test_portfolio.py checks every built-in one against the
    space of every fusion)."""
    import keras_tuner as kt

    for name, value in wanted.items():
        hps = [hp for hp in space.space if hp.name == name]
        if _defining(name) and hps and not any(valid(hp, value) for hp in hps):
            return None
    hps = kt.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            value = wanted.get(hp.name, hp.default)
            hps.values[hp.name] = value if valid(hp, value) else hp.default
    known = {hp.name for hp in space.space}
    return {**hps.values, **{k: v for k, v in wanted.items() if k not in known}}


def values_for(modalities: Mapping[str, str], space, portfolio=PORTFOLIO, limit: int = MAX_ENTRIES,
               head: str | None = None) -> list[tuple[str, dict]]:
    """(entry name, full hp values) for the first `limit` entries that fit these inputs, this
    space and this task head, without repeats."""
    out, seen = [], []
    for entry, wanted in entries_for(modalities, portfolio, head):
        values = resolve(wanted, space)
        if values is not None and entry.anneals(head):
            values[ANNEAL] = True
        if values is not None and values not in seen:
            seen.append(values)
            out.append((entry.name, values))
        if len(out) >= limit:
            break
    return out
