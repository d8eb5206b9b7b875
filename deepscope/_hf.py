"""HuggingFace model directories (``config.json`` + ``model.safetensors``), built without any network access.

``deepscope audit --model my-bert/ --data tokens.npz`` loads a directory written by
``save_pretrained``: the architecture class is the first of ``config.architectures`` that
``transformers`` itself defines (``BertForSequenceClassification``, ``GPT2LMHeadModel``, ...), built
from the config and filled from the safetensors weights with ``local_files_only=True`` and
``HF_HUB_OFFLINE=1`` (nothing is downloaded; a file that is missing is an error). A config that
needs code shipped with the model (``auto_map``, ``trust_remote_code``) is refused unless
``trust_code=True`` (CLI: ``--trust-code``), since that code runs when it is imported. Weights must
be safetensors: a ``pytorch_model.bin`` is a pickle and is refused with the conversion recipe.

The model comes back wrapped in :class:`Logits`, whose forward returns ``out.logits``: every
analysis sees one tensor of class scores, with the attention mask derived from the pad token. A
language model's ``(batch, positions, vocab)`` logits are reduced to the next-token scores after
each sequence's last attended token, ``(batch, vocab)``.

Requires the optional extra: ``pip install deepscope[hf]``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepscope._files import check_regular_file
from deepscope.errors import DataError, UnsafeFileError

__all__ = ["Logits", "check_token_data", "load_hf", "is_hf_directory"]

_MAX_CONFIG_BYTES = 1 << 20
_INSTALL = "pip install deepscope[hf]"


class Logits(nn.Module):
    """A HuggingFace model whose forward returns its ``logits`` (one tensor), for every analysis.

    ``forward(x)`` passes ``x`` as the model's main input (``input_ids`` for text, ``pixel_values``
    for images); named inputs (``forward(input_ids=..., attention_mask=...)``) pass through. Without
    an ``attention_mask``, token ids equal to ``pad_token_id`` are masked out, as a tokenizer's
    padding would be (no mask when the config has no pad token). Logits per position (a language
    model) give the scores of the next token after each sequence's last attended position.

    Args:
        model: a ``transformers`` ``PreTrainedModel`` whose output has ``logits``.
        pad_token_id: the config's pad token, or None.
    """

    def __init__(self, model: nn.Module, pad_token_id: int | None) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        main = getattr(self.model, "main_input_name", "input_ids")
        if args:
            kwargs[main] = args[0]
        ids = kwargs.get("input_ids")
        if ids is not None and "attention_mask" not in kwargs and self.pad_token_id is not None:
            kwargs["attention_mask"] = (ids != self.pad_token_id).long()
        output = self.model(**kwargs)
        logits = output.logits if hasattr(output, "logits") else output[0]
        if logits.dim() == 3:  # a language model's (batch, positions, vocab): the next token after the last real one
            mask = kwargs.get("attention_mask")
            if mask is None:
                return logits[:, -1]
            positions = torch.arange(mask.shape[1], device=mask.device)
            last = (positions * (mask != 0)).argmax(dim=1)  # right padding: the last attended position
            return logits[torch.arange(len(logits), device=logits.device), last]
        return logits


def is_hf_directory(path: Path) -> bool:
    """A directory holding a ``config.json``."""
    return path.is_dir() and (path / "config.json").is_file()


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bars or info logs from transformers while loading (deepscope reports problems itself)."""
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.exists():
        raise DataError(
            f"'{directory}' is a directory without a config.json; give a model file, or a HuggingFace model "
            "directory written by save_pretrained (config.json + model.safetensors)."
        )
    check_regular_file(path, "Model config")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise DataError(f"'{path}' is {path.stat().st_size} bytes; a HuggingFace config is a small JSON file.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"Cannot read '{path}' as JSON ({error}).") from error
    if not isinstance(config, dict):
        raise DataError(f"'{path}' is not a HuggingFace config (a JSON object with 'model_type').")
    return config


def _weights(directory: Path) -> list[Path]:
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.exists():
        return [check_regular_file(single, "Model file")]
    if index.exists():
        check_regular_file(index, "Model index")
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"Cannot read the shard index '{index}' ({error}).") from error
        paths = [directory / str(shard) for shard in shards]
        for path in paths:
            if path.resolve().parent != directory.resolve():
                raise DataError(f"The shard index '{index}' names '{path.name}' outside the model directory.")
            check_regular_file(path, "Model shard")
        return paths
    pickled = [
        name for name in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack") if (directory / name).exists()
    ]
    found = (
        f" (it holds {', '.join(pickled)}, which deepscope does not read: pytorch_model.bin is a pickle)"
        if pickled
        else ""
    )
    raise DataError(
        f"'{directory}' has a config.json but no model.safetensors{found}; save the weights with "
        "model.save_pretrained(directory) (safetensors is its default)."
    )


def load_hf(directory: Path, *, trust_code: bool = False) -> Logits:
    """Build the model of a HuggingFace directory offline and return it in eval mode, wrapped in :class:`Logits`.

    Raises:
        DataError: no config.json or weights, transformers missing, an architecture transformers does
            not define, weights that do not fill the model (names the keys).
        UnsafeFileError: a config that needs remote code without ``trust_code``.
    """
    config = _read_config(directory)
    remote = config.get("auto_map")
    if (remote or config.get("trust_remote_code")) and not trust_code:
        named = (
            f" (auto_map: {', '.join(f'{k} -> {v}' for k, v in remote.items())})" if isinstance(remote, dict) else ""
        )
        raise UnsafeFileError(
            f"'{directory / 'config.json'}' needs code shipped with the model{named}; importing it would run that "
            "code, so deepscope did not. If you trust it, pass trust_code=True (CLI: --trust-code)."
        )
    weights = _weights(directory)
    with _offline():  # before the import too: huggingface_hub reads HF_HUB_OFFLINE when it is first imported
        try:
            import transformers
        except ImportError as error:
            raise DataError(
                f"'{directory}' is a HuggingFace model directory; loading it needs transformers: {_INSTALL}."
            ) from error
    with _offline(), _quiet(transformers):
        cls = _architecture(transformers, config, directory, trust_code and bool(remote))
        _check_declared_size(transformers, cls, directory, weights, trust_code and bool(remote))
        try:
            model, info = cls.from_pretrained(
                str(directory), local_files_only=True, use_safetensors=True, output_loading_info=True,
                trust_remote_code=trust_code and bool(remote),
            )  # fmt: skip
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            raise DataError(
                f"Cannot load the HuggingFace model in '{directory}' ({type(error).__name__}: {error})."
            ) from error
    problems = [
        f"{kind.replace('_', ' ')} {_few(info.get(kind) or [])}"
        for kind in ("missing_keys", "mismatched_keys")
        if info.get(kind)
    ]
    if problems:
        raise DataError(
            f"The weights in '{directory}' do not fill {cls.__name__} as config.json describes it: {'; '.join(problems)}."
        )
    model.eval()
    built = type(model).__name__  # transformers' naming: task heads are XFor..., XLMHeadModel; XModel has none
    names = [kind.__name__ for kind in type(model).__mro__]
    if not remote and not any("For" in name or name.endswith("LMHeadModel") for name in names):
        raise DataError(
            f"{built} in '{directory}' is a base model without a task head (no logits to analyse); save a model with "
            "a head, e.g. ...ForSequenceClassification or ...LMHeadModel."
        )
    return Logits(model, getattr(model.config, "pad_token_id", None)).eval()


def check_token_data(model: Logits, dataset: Any) -> None:
    """Refuse token data the model cannot read: ids past its vocabulary, sequences past its positions, another pad.

    Args:
        model: from :func:`load_hf`.
        dataset: a DatasetSplits; only token data (``info["inputs"] == "token ids"``) is checked.
    """
    info = getattr(dataset, "info", None) or {}
    if info.get("inputs") != "token ids":
        return
    config = model.model.config
    name = getattr(dataset, "name", "the data")
    ids = [x for x in (dataset.x_train, dataset.x_test) if len(x)]
    vocab = getattr(config, "vocab_size", None)
    largest = max(int(x.max()) for x in ids)
    if isinstance(vocab, int) and largest >= vocab:
        raise DataError(
            f"Token id {largest} in {name} is out of range: the model's vocabulary has {vocab} ids (0..{vocab - 1}); "
            "the data was tokenized for another model."
        )
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(positions, int) and dataset.x_train.shape[1] > positions:
        raise DataError(
            f"The sequences of {name} have {dataset.x_train.shape[1]} tokens; the model takes at most {positions}."
        )
    pad = info.get("pad_token_id")
    if pad is not None and pad != model.pad_token_id:
        raise DataError(
            f"The attention masks of {name} pad with id {pad}, but the model's config.json has pad_token_id "
            f"{model.pad_token_id}; the masks do not match the model (tokenize with its tokenizer, or set "
            f'"pad_token_id": {pad} in config.json if the model pads with that token).'
        )


def _architecture(transformers: Any, config: dict[str, Any], directory: Path, remote: bool) -> Any:
    """The class to build: transformers' own class named in ``architectures`` (or the auto class for remote code)."""
    if remote:
        auto = [name for name in config["auto_map"] if name.startswith("AutoModel") and hasattr(transformers, name)]
        if not auto:
            raise DataError(f"'{directory / 'config.json'}' maps no AutoModel class in its auto_map.")
        return getattr(transformers, auto[0])
    names = config.get("architectures") or []
    for name in names if isinstance(names, list) else []:
        cls = getattr(transformers, str(name), None) if str(name).isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    raise DataError(
        f"'{directory / 'config.json'}' names no architecture that transformers {transformers.__version__} defines "
        f'(architectures: {names!r}); add one such as "BertForSequenceClassification".'
    )


def _check_declared_size(transformers: Any, cls: Any, directory: Path, weights: list[Path], remote: bool) -> None:
    """Build the architecture on the meta device and compare its bytes with the files' (nothing allocated)."""
    if remote:
        return  # remote code builds through its auto class; from_pretrained checks the shapes
    try:
        config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True)
        with torch.device("meta"):
            model = cls(config)
    except Exception as error:  # noqa: BLE001 - a config transformers rejects: report it as the user's data
        raise DataError(
            f"Cannot build {cls.__name__} from '{directory / 'config.json'}' ({type(error).__name__}: {error})."
        ) from error
    unique = {id(t): t for t in model.state_dict(keep_vars=True).values()}.values()
    declared = sum(t.numel() * t.element_size() for t in unique)
    held = sum(path.stat().st_size for path in weights)
    if declared > 4 * held + 2**20:  # 4x: a float32 model may read a float16 or 8-bit file
        raise DataError(
            f"'{directory / 'config.json'}' declares {declared / 2**20:.1f} MB of weights, but the weights files hold "
            f"only {held / 2**20:.1f} MB; the config does not match the weights (nothing was allocated)."
        )


def _few(found: Any) -> str:
    names = sorted(n if isinstance(n, str) else str(n[0]) for n in found)  # keys, or (key, shapes) tuples
    shown = ", ".join(f"'{n}'" for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
