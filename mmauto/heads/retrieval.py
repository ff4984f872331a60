"""Retrieval (`task: retrieval`): two or more inputs whose rows are matching pairs; no target.

Why a head: everything the rest of the code asks of a task (loss, metrics, objective, served
outputs, prediction columns, evaluation) has one answer here, so the search, the export and
`mmauto evaluate` run unchanged. The model's output is the inputs' embeddings side by side,
[N, n * dim]: each input's gated pooled vector (after its `<input>_missing` gate, see
model/hypermodel.py) projected to `dim` (`search.space.embedding_width`, searched in
EMBEDDING_WIDTHS unless pinned) and L2-normalised by the `output` layer
(layers.RetrievalEmbeddings), which also holds CLIP's learned temperature. The loss
(retrieval_losses.InfoNCELoss) is a symmetric InfoNCE over in-batch negatives computed from that
output, for every pair of inputs; its `y_true` is not a target but the rows' presence per
input ([N, n], `Preprocessing.presence`), so a row missing one side of a pair is left out of
that pair's loss, metric and evaluation. The search objective is the in-batch recall@1 on
validation (`val_recall_at_1`).

Served: `embedding_<input>` per input, float32 [N, dim], L2-normalised; prediction tables hold
one column per dimension, `embedding_<input>_<k>` (the same in every table format). Evaluation
ranks, for each ordered pair of inputs (A -> B), every row's A embedding against all the split's
B embeddings by cosine similarity, exactly, in NumPy: recall@1/5/10 and the mean rank of the
true match (rank 1 is best; candidates that tie with it do not push it down), over the rows
that have both inputs.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mmauto.heads.base import HEADS, Head

EMBEDDING_WIDTHS = [32, 64]
RECALL_AT = (1, 5, 10)
# Query rows ranked per block: a block's similarities are BLOCK x candidates float32.
BLOCK = 1024


def match_ranks(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """1-based rank of each query row's own match (the candidate of the same row) among all
    candidates by cosine similarity (rows L2-normalised here); ties count in the match's favour.
    Pass only the rows that have both inputs."""
    q, c = normalize(queries), normalize(candidates)
    ranks = np.empty(len(q), "int64")
    for start in range(0, len(q), BLOCK):
        sims = q[start : start + BLOCK] @ c.T
        own = sims[np.arange(len(sims)), np.arange(start, start + len(sims))]
        ranks[start : start + len(sims)] = 1 + (sims > own[:, None]).sum(axis=1)
    return ranks


def top_k(queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [Q, k], cosine similarities [Q, k]) of each query's k most similar candidates,
    best first (exact, NumPy; ties keep the lower candidate index first)."""
    q, c = normalize(queries), normalize(candidates)
    k = min(k, len(c))
    idx = np.empty((len(q), k), "int64")
    val = np.empty((len(q), k), "float32")
    for start in range(0, len(q), BLOCK):
        sims = q[start : start + BLOCK] @ c.T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        idx[start : start + len(sims)] = order
        val[start : start + len(sims)] = np.take_along_axis(sims, order, axis=1)
    return idx, val


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, "float32")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@HEADS.register("retrieval")
class RetrievalHead(Head):
    """See the module docstring. `state`: {"inputs": the input names in model order, "dim":
    the exported model's embedding width (recorded by the export stage, `adopt`)}."""

    activation = "linear"
    default_objective = "val_recall_at_1"
    main_metric = "recall_at_1"
    lower_is_better = ("mean_rank",)
    parity_output = "embedding"

    @classmethod
    def accepts(cls, task: str, classes: Optional[list[str]]) -> bool:
        return task == "retrieval"

    @property
    def inputs(self) -> list[str]:
        return list(self.state["inputs"])

    @property
    def dim(self) -> int:
        """The embedding width (before `adopt`: the widest searched, for size estimates)."""
        return int(self.state.get("dim") or max(EMBEDDING_WIDTHS))

    # === Model ===

    @property
    def units(self) -> int:
        return len(self.inputs) * self.dim

    def output(self, projected, name: str = "output", scope: str = ""):
        """`projected`: the inputs' projections side by side, [N, n * dim]."""
        from mmauto.layers import RetrievalEmbeddings

        return RetrievalEmbeddings(len(self.inputs), dtype="float32", name=name)(projected)

    def loss(self):
        raise NotImplementedError("the retrieval loss reads the model's temperature: use training(hp, model)")

    def metrics(self) -> list:
        from mmauto.heads.retrieval_losses import InBatchRecall

        return [InBatchRecall(len(self.inputs), name="recall_at_1")]

    def training(self, hp, model, output: str = "output") -> tuple:
        from mmauto.heads.retrieval_losses import InfoNCELoss

        return InfoNCELoss(len(self.inputs), model.get_layer("output").logit_scale), self.metrics()

    def adopt(self, model) -> bool:
        """Record the selected model's embedding width (its output is n * dim wide)."""
        dim = int(model.output.shape[-1]) // len(self.inputs)
        changed = self.state.get("dim") != dim
        self.state["dim"] = dim
        return changed

    # === Targets ===

    def encode(self, values) -> np.ndarray:
        """`values`: per row, 1.0 or 0.0 per input (present or missing)."""
        return np.asarray(values, "float32").reshape(len(values), len(self.inputs))

    # === Serving ===

    def _split(self, y) -> list:
        n = len(self.inputs)
        d = int(y.shape[-1]) // n
        return [y[:, i * d : (i + 1) * d] for i in range(n)]

    def serve(self, y) -> dict:
        return {self.key(f"embedding_{name}"): part for name, part in zip(self.inputs, self._split(y))}

    def expected(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, "float32")

    def parity_values(self, outputs: dict) -> np.ndarray:
        return np.concatenate([np.asarray(outputs[self.key(f"embedding_{n}")]) for n in self.inputs], axis=1)

    def numpy_outputs(self, y: np.ndarray) -> dict:
        return self.serve(np.asarray(y, "float32"))

    def output_specs(self) -> dict:
        return {self.key(f"embedding_{n}"): {"dtype": "float32", "shape": [None, self.dim],
                                             "description": f"input '{n}' embedded, L2-normalised: rank by dot product (cosine)"}
                for n in self.inputs}

    def contribution(self, full: dict, without: dict):
        """Per row: 1 - cosine between the row's embeddings with and without the input,
        averaged over the inputs (0: the input moves nothing)."""
        import tensorflow as tf

        parts = [1.0 - tf.reduce_sum(full[k] * without[k], axis=-1) for k in full if k.startswith(self.key("embedding_"))]
        return tf.add_n(parts) / len(parts)

    def card(self) -> dict:
        return {"head": self.name, "labels": None, "threshold": None, "inputs": self.inputs, "embedding_dim": self.state.get("dim")}

    # === Predictions and evaluation ===

    def columns(self, outputs: dict) -> dict:
        cols = {}
        for n in self.inputs:
            e = np.asarray(outputs[self.key(f"embedding_{n}")])
            cols.update({f"{self.prefix}embedding_{n}_{k}": e[:, k] for k in range(e.shape[1])})
        return cols

    def score(self, values, outputs: dict) -> dict:
        """recall@1/5/10 and the mean rank for each ordered pair of inputs (`A_to_B_...`), and
        their means over the pairs (`recall_at_1`...). Every row that has both inputs of a pair
        is a query, and the candidates; its own row is the one match (`values`: the rows'
        presence per input, see `encode`; `<A>_to_<B>_rows`: how many rows had both)."""
        emb = {n: np.asarray(outputs[self.key(f"embedding_{n}")], "float32") for n in self.inputs}
        rows = len(next(iter(emb.values())))
        have = self.encode(values).astype(bool)
        out: dict = {"rows": int(rows)}
        per: dict[str, list] = {}
        for ia, a in enumerate(self.inputs):
            for ib, b in enumerate(self.inputs):
                if a == b:
                    continue
                both = have[:, ia] & have[:, ib]
                out[f"{a}_to_{b}_rows"] = int(both.sum())
                if not both.any():
                    continue
                ranks = match_ranks(emb[a][both], emb[b][both])
                got = {**{f"recall_at_{k}": float(np.mean(ranks <= k)) for k in RECALL_AT},
                       "mean_rank": float(ranks.mean()), "median_rank": float(np.median(ranks))}
                for k, v in got.items():
                    out[f"{a}_to_{b}_{k}"] = v
                    per.setdefault(k, []).append(v)
        return {**{k: float(np.mean(v)) for k, v in per.items()}, **out}
