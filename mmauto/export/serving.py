"""Ready-to-send requests for a fitted model: a TF Serving REST body and a Python snippet."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path


def rest_instances(prep, frame, root: Path, rows: int = 2) -> list[dict]:
    """The first rows of a table as TF Serving REST instances (bytes as {"b64": ...})."""
    values = prep.serving_values(frame.head(rows), root)
    out = []
    for i in range(min(rows, len(frame))):
        inst = {}
        for k, v in values.items():
            x = v[i]
            if isinstance(x, bytes):
                inst[k] = {"b64": base64.b64encode(x).decode()}
            elif isinstance(x, float) and math.isnan(x):
                inst[k] = float("nan")  # JSON has no NaN: TF Serving reads the literal NaN
            elif hasattr(x, "tolist"):  # numpy scalars, and the arrays of [N, ...] inputs
                inst[k] = x.tolist()
            else:
                inst[k] = x
        out.append(inst)
    return out


def write_request(run_dir: Path, prep, frame, root: Path, rows: int = 2) -> Path:
    path = Path(run_dir) / "request.json"
    path.write_text(json.dumps({"signature_name": "serving_default", "instances": rest_instances(prep, frame, root, rows)}))
    return path


def snippets(run_dir: Path, name: str, needs_text_ops: bool, request: Path) -> dict:
    run_dir = Path(run_dir).resolve()
    model = run_dir / "model"
    text_ops = "import tensorflow_text  # keras-hub tokenizer ops\n" if needs_text_ops else ""
    return {
        "serve": f"docker run -p 8501:8501 -v {model}:/models/{name}/1 -e MODEL_NAME={name} tensorflow/serving",
        "rest": f"curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{request}",
        "python": (f"import tensorflow as tf\n{text_ops}m = tf.saved_model.load('{model}')\n"
                   "out = m.signatures['serving_default'](**inputs)  # one tensor per serving input, see mmauto.json\n"
                   "print(out['label'].numpy())"),
    }
