"""Language models, registered in the model table (core.models.MODELS) beside the image ones.

- `gpt:layers=4,width=128,heads=4,context=128`: a small decoder-only transformer on bytes. Every projection is a
  plain nn.Linear (q, k, v, out, and the MLP's two), so pruning and quantization see them as they see an image
  model's layers.
- `hf:PATH`: a local Hugging Face causal-LM folder (config, safetensors, tokenizer), loaded offline.

Every language model here is called as `model(ids) -> logits` (B, T, vocab), so the lab's measurement and paired
timing treat it like any module, and `model.decode_step(ids, cache) -> (logits, cache)` runs one step with a
key-value cache (decode speed). `model.tokenizer` encodes and decodes its text.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.models import MODELS, WHOLE_REST_ARG, format_spec, parse_spec, register_model
from ..errors import LabError
from .corpus import ByteTokenizer

LANGUAGE_MODELS = {"gpt", "hf"}
HF = "hf:"


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: tuple | None = None):
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        # a prefill attends causally; one cached decode step attends to everything before it
        y = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None or q.shape[2] > 1)
        b, h, t, d = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * d)), (k, v)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.fc1, self.fc2 = nn.Linear(width, mlp_ratio * width), nn.Linear(mlp_ratio * width, width)

    def forward(self, x: torch.Tensor, cache: tuple | None = None):
        attended, cache = self.attn(self.norm1(x), cache)
        x = x + attended
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)))), cache


class GPT(nn.Module):
    def __init__(self, vocab_size: int = 256, layers: int = 4, width: int = 128, heads: int = 4,
                 context: int = 128):
        super().__init__()
        self.context, self.vocab_size = context, vocab_size
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.tokenizer = ByteTokenizer()
        self.init_weights()

    def init_weights(self) -> None:
        """Every weight drawn afresh, whatever the blocks' (possibly pruned) shapes: GPT-2's init."""
        self.apply(self._init)
        for block in self.blocks:  # GPT-2's scaled init of the residual projections: deep stacks start stable
            for proj in (block.attn.out, block.fc2):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * len(self.blocks)))
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _run(self, ids: torch.Tensor, caches: list | None, start: int):
        if start + ids.shape[1] > self.context:
            raise LabError(f"{start + ids.shape[1]} tokens do not fit this model's context of {self.context}.")
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.token(ids) + self.position(positions)
        new = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, None if caches is None else caches[i])
            new.append(cache)
        return self.head(self.norm(x)), new

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run(ids, None, 0)[0]

    def decode_step(self, ids: torch.Tensor, cache=None):
        """Logits for `ids` after the cached tokens, and the cache extended by them."""
        start = 0 if cache is None else cache[0][0].shape[2]
        return self._run(ids, cache, start)


@register_model("a small GPT (decoder-only transformer) on bytes, for text data sets: "
                "gpt:layers=4,width=128,heads=4,context=128", zoo=False)
def gpt(input_shape=None, num_classes=256, layers=4, width=128, heads=4, context=128):
    return GPT(num_classes, layers, width, heads, context)


# ---------------------------------------------------------------- hf:PATH

class HFCausalLM(nn.Module):
    """A Hugging Face causal LM behind the lab's interface: `model(ids) -> logits`, and a KV-cache decode step."""

    def __init__(self, model: nn.Module, tokenizer, path: str):
        super().__init__()
        self.model, self.path = model, path
        self.tokenizer = HFTokenizer(tokenizer, path)
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.vocab_size = int(model.config.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits

    def decode_step(self, ids: torch.Tensor, cache=None):
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
        return out.logits, out.past_key_values


class HFTokenizer:
    """The checkpoint's own tokenizer; bits per byte count the UTF-8 bytes its tokens decode to."""

    def __init__(self, tokenizer, path: str):
        self.tokenizer, self.name = tokenizer, f"hf:{path}"
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def byte_count(self, ids) -> int:
        return len(self.decode(ids).encode("utf-8"))

    def __getstate__(self):  # a fast tokenizer pickles as its JSON (the model file keeps it)
        return {"json": self.tokenizer.backend_tokenizer.to_str(), "name": self.name}

    def __setstate__(self, state):
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(state["json"]))
        self.name, self.vocab_size = state["name"], len(self.tokenizer)


def load_hf(path: str, download: bool = False) -> HFCausalLM:
    """A local causal-LM folder; safetensors only (a .bin checkpoint is a pickle and could run code)."""
    folder = Path(path).expanduser()
    if not download:
        if not folder.is_dir():
            raise LabError(f"No Hugging Face model folder at {folder}: give a local folder with config.json, "
                           "*.safetensors and the tokenizer (or --download to fetch a hub name).")
        if not (folder / "config.json").exists():
            raise LabError(f"{folder} has no config.json: it is not a Hugging Face model folder.")
        if not list(folder.glob("*.safetensors")):
            if list(folder.glob("*.bin")):
                raise LabError(f"{folder} has only .bin weights, which are pickles and can run code when loaded. "
                               "Convert them once where you trust the file: AutoModelForCausalLM.from_pretrained("
                               "PATH).save_pretrained(PATH, safe_serialization=True).")
            raise LabError(f"{folder} has no *.safetensors weights.")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained(str(folder) if not download else path,
                                                     local_files_only=not download, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder) if not download else path,
                                                  local_files_only=not download)
    except LabError:
        raise
    except Exception as err:
        raise LabError(f"Could not load the Hugging Face model at {path}: "
                       f"{(str(err).splitlines() or [type(err).__name__])[0][:200]}") from None
    return HFCausalLM(model.eval(), tokenizer, str(folder))


@register_model("your own Hugging Face causal LM folder (config, safetensors, tokenizer): hf:PATH", name="hf",
                zoo=False)
def hf(input_shape=None, num_classes=None, path="", download=False):
    return load_hf(path, download)


WHOLE_REST_ARG["hf"] = "path"


def build_language_model(spec: dict, download: bool = False) -> nn.Module:
    args = dict(spec["args"])
    if spec["name"] == "hf":
        args["download"] = bool(download or args.get("download"))
    try:
        return MODELS.get(spec["name"])(**args)
    except (TypeError, ValueError) as err:
        raise LabError(f"Model {format_spec(spec)} does not build: {str(err).splitlines()[0][:200]}") from None
