"""Model-card text that several families share: loading the saved state dict, running the ONNX file."""

from __future__ import annotations

SAFETENSORS_USAGE = """With PyTorch: `model.safetensors` holds the state dict of the whole embedding model
(`finetuner.json` says how it is built), so `finetuner.get_model` is the simplest way to rebuild it.
"""

FINETUNER_SETUP = 'import finetuner\n\nmodel = finetuner.get_model("path/to/model")  # for its preprocessing\n'
FINETUNER_FEED = (
    "values = [...]  # your inputs\ninputs = {session.get_inputs()[0].name: model.preprocess(values).numpy()}"
)


def onnx_runtime_usage(files: list[str], setup: str = FINETUNER_SETUP, feed: str = FINETUNER_FEED) -> str:
    """Running the first of ``files`` with ONNX Runtime: ``setup`` prepares the preprocessing, ``feed`` makes the
    ``inputs`` dict from the inputs (both Python code)."""
    listed = ", ".join(f"`{f}`" for f in files)
    return (
        f"With ONNX Runtime ({listed}; output `embedding`):\n\n```python\nimport onnxruntime\n{setup}\n"
        f'session = onnxruntime.InferenceSession("path/to/model/{files[0]}")\n{feed}\n'
        "names = {i.name for i in session.get_inputs()}\n"
        'embeddings = session.run(["embedding"], {k: v for k, v in inputs.items() if k in names})[0]\n```\n'
    )
