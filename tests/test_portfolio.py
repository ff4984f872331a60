"""The portfolio: a search's first trials are its entries, in order, then the oracle's own
choices; a resumed search goes on with the next entry."""

import keras_tuner as kt
import pytest

from mmauto.search import oracles, portfolio
from mmauto.search.portfolio import Entry

INPUTS = {"review": "text", "meta": "tabular"}
ENTRIES = (
    # Needs an image input: not used for text + table.
    Entry("image", ("image",), {"image": {"encoder": "cnn"}}, {"fusion": "sum"}, "test"),
    Entry("first", ("text",), {"text": {"encoder": "tfidf", "tfidf/width": 32}}, {"fusion": "concat", "learning_rate": 3e-3}, "test"),
    # Its fusion is not in the space (the manifest's choices): dropped.
    Entry("pinned out", ("text",), {"text": {"encoder": "textcnn"}}, {"fusion": "transformer"}, "test"),
    # A width the space does not allow falls back to the default; the encoder choice stays.
    Entry("second", ("tabular",), {"tabular": {"encoder": "ft_transformer"}, "text": {"encoder": "textcnn", "textcnn/width": 48}},
          {"fusion": "gated", "width": 999}, "test"),
)


def space():
    hp = kt.HyperParameters()
    hp.Choice("review/encoder", ["tfidf", "textcnn"])
    with hp.conditional_scope("review/encoder", ["tfidf"]):
        hp.Choice("review/tfidf/width", [32, 64], default=64)
    with hp.conditional_scope("review/encoder", ["textcnn"]):
        hp.Choice("review/textcnn/width", [32, 64])
    hp.Choice("meta/encoder", ["mlp", "ft_transformer"])
    hp.Fixed("width", 16)
    hp.Choice("fusion", ["concat", "gated", "sum"])
    with hp.conditional_scope("fusion", ["concat"]):
        hp.Choice("concat/depth", [1, 2, 3], default=1)
    hp.Float("learning_rate", 3e-4, 1e-2, sampling="log")
    return hp


FIRST = {"review/encoder": "tfidf", "review/tfidf/width": 32, "meta/encoder": "mlp", "width": 16, "fusion": "concat",
         "concat/depth": 1, "learning_rate": 3e-3}
SECOND = {"review/encoder": "textcnn", "review/textcnn/width": 32, "meta/encoder": "ft_transformer", "width": 16,
          "fusion": "gated", "learning_rate": 3e-4}


def test_entries_resolve_against_the_space():
    assert portfolio.values_for(INPUTS, space(), ENTRIES) == [("first", FIRST), ("second", SECOND)]
    assert portfolio.values_for(INPUTS, space(), ENTRIES, limit=1) == [("first", FIRST)]
    # The built-in portfolio: text + table starts from TF-IDF (its first usable entry here).
    builtin = portfolio.values_for(INPUTS, space())
    assert builtin and builtin[0][1]["review/encoder"] == "tfidf"
    assert all(len(e.why) > 20 for e in portfolio.PORTFOLIO)


def test_an_entry_that_anneals_marks_its_values():
    """`anneal` puts the ANNEAL mark beside the resolved values (the tuner reads it), for any
    head or for the heads it names; the built-in CNN entry for images and audio has it for a
    multiclass label only, the text entries not at all."""
    def entry(anneal):
        return (Entry("first", ("text",), {"text": {"encoder": "tfidf", "tfidf/width": 32}},
                      {"fusion": "concat", "learning_rate": 3e-3}, "test", anneal=anneal),)

    marked = [("first", {**FIRST, portfolio.ANNEAL: True})]
    assert portfolio.values_for(INPUTS, space(), entry(True)) == marked
    assert portfolio.values_for(INPUTS, space(), entry(("multiclass",)), head="multiclass") == marked
    assert portfolio.values_for(INPUTS, space(), entry(("multiclass",)), head="binary") == [("first", FIRST)]
    assert portfolio.ANNEAL not in portfolio.values_for(INPUTS, space())[0][1]
    cnn = [e for e in portfolio.PORTFOLIO if "image" in e.modalities and not e.heads]
    assert cnn and all(e.anneals("multiclass") and not e.anneals("binary") for e in cnn)


def make_oracle(kind, folder):
    oracle = oracles.make_oracle(kind, "val_accuracy", max_trials=10, epochs=3, seed=1, max_failures=3)
    oracle._set_project_dir(str(folder), "search")
    oracle.update_space(space())
    if (folder / "search" / "oracle.json").exists():
        oracle.reload()
    oracle.portfolio = portfolio.values_for(INPUTS, oracle.get_space(), ENTRIES)
    return oracle


def run_trials(oracle, n):
    out = []
    for _ in range(n):
        trial = oracle.create_trial("tuner0")
        assert trial.status == "RUNNING"
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5 + 0.01 * len(oracle.trials)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        oracle.save()  # as the tuner does after each trial (end_trial saves before the trial stops running)
        out.append({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
    return out


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_first_trials_are_the_portfolio_then_the_oracle(kind, tmp_path):
    values = run_trials(make_oracle(kind, tmp_path), 4)
    assert values[0] == FIRST and values[1] == SECOND
    assert all(v not in (FIRST, SECOND) for v in values[2:])


@pytest.mark.parametrize("kind", ["random", "hyperband"])
def test_resume_goes_on_with_the_next_entry(kind, tmp_path):
    assert run_trials(make_oracle(kind, tmp_path), 1) == [FIRST]
    # A new process: the oracle reloads oracle.json and takes the second entry, once.
    resumed = make_oracle(kind, tmp_path)
    assert resumed.portfolio_used == 1
    values = run_trials(resumed, 2)
    assert values[0] == SECOND and values[1] not in (FIRST, SECOND)
    again = make_oracle(kind, tmp_path)
    assert again.portfolio_used == 2 and run_trials(again, 1)[0] not in (FIRST, SECOND)


def test_the_pairwise_entry_needs_two_inputs_to_compare_and_a_binary_label():
    names = lambda inputs, head="binary": [e.name for e, _ in portfolio.entries_for(inputs, head=head)]  # noqa: E731
    pair = "image/audio pairs: cnn, pairwise comparison"
    assert pair in names({"image": "image", "audio": "audio"})
    assert pair in names({"left": "image", "right": "image"})
    assert pair not in names({"image": "image"}) and pair not in names({"image": "image", "review": "text"})
    assert all(pair not in names({"image": "image", "audio": "audio"}, head) for head in ("multiclass", "regression", None))


def test_settings_for_one_head_go_only_to_that_heads_searches():
    entry = Entry("e", ("image",), {"image": {"encoder": "cnn"}}, {"fusion": "sum"}, "test", per_head={"binary": {"match_weight": 0.5}})
    inputs = {"image": "image", "audio": "audio"}
    wanted = {head: portfolio.entries_for(inputs, (entry,), head=head)[0][1] for head in ("binary", "multiclass", None)}
    assert wanted["binary"]["match_weight"] == 0.5
    assert "match_weight" not in wanted["multiclass"] and "match_weight" not in wanted[None]


def test_builtin_entries_name_real_hyperparameters(tmp_path):
    """Every value a built-in entry sets for image + audio inputs is a hyperparameter of the
    real search space (built once per fusion, so every conditional branch is in it) that
    allows it: a misspelt name or a value out of its choices would silently fall back to the
    space's default, or reach a build that never meant it. Resolved against the space a
    search starts from, the trial gets every value the entry names. A binary label (yes/no),
    so the settings entries keep for the binary head are in the space too."""
    import yaml

    from mmauto.config.manifest import load_manifest
    from mmauto.data.checks import load_splits
    from mmauto.data.demo import write_demo
    from mmauto.data.pipeline import Preprocessing
    from mmauto.fusion import FUSIONS
    from mmauto.model.hypermodel import MultimodalHyperModel

    manifest = write_demo(tmp_path / "data", rows=40, seed=0, redundant=True)
    data = yaml.safe_load(manifest.read_text())
    data["data"]["train"] = str(manifest.parent / data["data"]["train"])
    data["inputs"] = {k: v for k, v in data["inputs"].items() if k in ("photo", "voice")}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(tmp_path / "m.yaml")
    hm = MultimodalHyperModel(Preprocessing.fit(m, load_splits(m)))
    by_name: dict = {}
    for fname in FUSIONS.names():
        hp = kt.HyperParameters()
        hp.values["fusion"] = fname
        hm.build(hp)
        for h in hp.space:
            by_name.setdefault(h.name, []).append(h)
    used = portfolio.entries_for({"photo": "image", "voice": "audio"}, head=hm.prep.head.name)
    assert [e.name for e, _ in used] == ["image/audio: cnn 32x3", "image/audio pairs: cnn, pairwise comparison"]
    assert used[1][1]["match_weight"] == 0.5
    first = kt.HyperParameters()
    hm.build(first)  # the space a search starts from: the default fusion's branch only
    for entry, wanted in used:
        for name, value in wanted.items():
            assert name in by_name, f"{entry.name}: no hyperparameter '{name}'"
            assert any(portfolio.valid(h, value) for h in by_name[name]), f"{entry.name}: {name}={value!r} not allowed"
        resolved = portfolio.resolve(wanted, first)
        assert all(resolved[k] == v for k, v in wanted.items()), entry.name
        trial = first.copy()
        trial.values = dict(resolved)
        hm.build(trial)  # as a trial builds it: the values the space did not hold yet are kept
        assert all(trial.values[k] == v for k, v in wanted.items()), entry.name


@pytest.mark.parametrize("kind", ["random", "bayesian"])
def test_replicas_repeat_the_best_configuration_once_the_portfolio_is_tried(kind, tmp_path):
    """While the tuner asks for replicas (`replicate`, set for the last trials that fit) a trial
    repeats the best configuration so far, numbered; the portfolio's entries still come first."""
    oracle = make_oracle(kind, tmp_path)
    scores = iter([0.7, 0.9, 0.6, 0.5, 0.5, 0.5])

    def trial():
        t = oracle.create_trial("tuner0")
        oracle.update_trial(t.trial_id, {"val_accuracy": next(scores)})
        t.status = "COMPLETED"
        oracle.end_trial(t)
        return t

    oracle.replicate = True
    first, second = trial(), trial()  # the two entries, though replicas are asked for
    assert [base(first), base(second)] == [FIRST, SECOND]
    oracle.replicate = False
    explored = trial()
    assert base(explored) not in (FIRST, SECOND) and oracles.replica_of(oracle.trials, explored) is None
    oracle.replicate = True
    one, two = trial(), trial()
    assert one.hyperparameters.values == {**second.hyperparameters.values, oracles.REPLICA: 1}
    assert two.hyperparameters.values == {**second.hyperparameters.values, oracles.REPLICA: 2}
    assert oracles.replica_of(oracle.trials, two) == second.trial_id
    oracle.save()
    resumed = make_oracle(kind, tmp_path)  # replica numbers go on after a resume
    resumed.replicate = True
    assert resumed.create_trial("tuner0").hyperparameters.values[oracles.REPLICA] == 3


def base(trial):
    return {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
