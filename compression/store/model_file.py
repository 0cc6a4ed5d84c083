"""Model files that are safe to load from a shared artifact store: no file is ever unpickled.

A file is `torch.save({"format", "manifest", "tensors"})`, read back with `torch.load(weights_only=True)`, which
builds only tensors, dicts, lists and strings (a pickled payload planted in the store is refused before any of it
runs). The architecture is the manifest, a JSON description of the module tree that the lab writes itself:
  * each module: its class (by import path, only from torch, torchvision, torchao, transformers and this package,
    and only nn.Module subclasses), its plain attributes (numbers, strings, dtypes, shapes, a Hugging Face config
    as its dict), its parameters and buffers by tensor key, and its children;
  * so pruned shapes (fewer channels, heads or units) are simply the shapes of the stored tensors and the
    attributes the pruner set, and quantized weights are torchao's tensor subclasses, which weights_only loads.
A module is rebuilt without calling its __init__, and an attribute may name a class (a norm layer's) or one of a
fixed table of activation functions (torch's gelu, relu, silu, ...), never another function, nor replace one of the
class's methods: no code of the file's choosing runs, and the class's own methods
run later, as for any model. Packed int8 weights (torch.ao) are restored through the module's own load_state_dict.
save checks every file by loading it back and comparing outputs, so a model this cannot describe is refused when
it is made, not when someone loads it.
"""
from __future__ import annotations

import functools
import importlib
import io
import json
import pickle

import torch
from torch import nn

from ..errors import LabError

FORMAT = "compression-lab-model/1"
ALLOWED_PACKAGES = ("torch", "torchvision", "torchao", "transformers", "compression")
_MODULE_BASE = set(vars(nn.Module())) - {"training"}  # what nn.Module.__init__ makes: rebuilt, not stored
_HOOK_DICTS = sorted(k for k in _MODULE_BASE if "hook" in k)
_DTYPES = {str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)}
# Attributes left out of the manifest, and why each is safe to lose:
# - `_weight_conversions`: transformers 5's from_pretrained attaches the checkpoint-key renamings it applied (Pythia's
#   `embed_out.` -> `lm_head.`, as WeightRenaming objects) so that save_pretrained can write the old names back.
#   Without it save_pretrained uses the family's default mapping (the same renamings), and from_pretrained reads
#   either name; the weights and the forward pass do not depend on it.
# - `_packed`: an int4 layer's weights packed for this CPU's kernel (techniques.quantize_kernels): the layout differs
#   between CPUs (AVX512 / AVX2), so the file keeps the portable 4-bit values and each machine packs them again.
_DROPPED_ATTRS = frozenset({"_weight_conversions", "_packed"})
# The only functions an attribute may name (an activation held as a function: transformers' GELUActivation keeps
# `act = nn.functional.gelu`, as in Pythia's blocks): a fixed table, read by name, never an import path of the file's
# choosing.
_FUNCTIONS = {f"torch.nn.functional.{name}": getattr(nn.functional, name) for name in (
    "gelu", "relu", "relu6", "silu", "mish", "tanh", "sigmoid", "softplus", "elu", "selu", "celu", "leaky_relu",
    "hardswish", "hardsigmoid", "hardtanh", "softsign", "logsigmoid", "glu")}
_FUNCTIONS.update({f"torch.{name}": getattr(torch, name) for name in ("tanh", "sigmoid", "relu")})
_FUNCTION_NAMES = {id(function): name for name, function in reversed(list(_FUNCTIONS.items()))}


class NotDescribable(LabError):
    """This model has a part the manifest cannot describe (a closure, a hook, a foreign class)."""


# ----------------------------------------------------------------------------------------------------- writing

def encode(model: nn.Module) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    manifest = _Writer(tensors).module(model, "")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "manifest": json.dumps(manifest), "tensors": tensors}, buffer)
    return buffer.getvalue()


def _import_path(obj) -> str:
    path = f"{obj.__module__}.{obj.__qualname__}"
    if not path.startswith(tuple(p + "." for p in ALLOWED_PACKAGES)) or _resolve(path) is not obj:
        raise NotDescribable(f"{path} is not importable from {', '.join(ALLOWED_PACKAGES)}")
    return path


class _Writer:
    def __init__(self, tensors: dict):
        self.tensors = tensors
        # tied weights (an LM head sharing the embedding) stay tied; the tensor is held so that its id is not reused
        self.seen_tensors: dict[int, tuple[str, torch.Tensor]] = {}
        self.seen_modules: dict[int, str] = {}

    def tensor(self, value: torch.Tensor, key: str) -> dict:
        if id(value) in self.seen_tensors:
            return {"alias": self.seen_tensors[id(value)][0]}
        self.seen_tensors[id(value)] = key, value
        self.tensors[key] = value.detach()
        return {"key": key}

    def module(self, module: nn.Module, prefix: str) -> dict:
        if id(module) in self.seen_modules:
            return {"same_as": self.seen_modules[id(module)]}
        self.seen_modules[id(module)] = prefix
        hooks = [k for k in _HOOK_DICTS if getattr(module, k, None)]
        if hooks:
            raise NotDescribable(f"module '{prefix or 'model'}' has hooks ({', '.join(hooks)})")
        entry: dict = {"class": _import_path(type(module)), "params": {}, "buffers": {}, "children": {}, "attrs": {}}
        for name, value in module.__dict__.items():
            if name in _MODULE_BASE or name in _DROPPED_ATTRS:
                continue
            if isinstance(value, torch.ScriptObject) or name == "extra_repr":
                continue  # packed int8 weights: rebuilt by the module's own loader; torchao's printing aid
            entry["attrs"][name] = self.value(value, f"{prefix}@{name}")
        for name, param in module._parameters.items():
            entry["params"][name] = None if param is None else {
                **self.tensor(param, prefix + name), "grad": param.requires_grad}
        for name, buffer in module._buffers.items():
            entry["buffers"][name] = None if buffer is None else self.tensor(buffer, prefix + name)
        entry["non_persistent"] = sorted(module._non_persistent_buffers_set)
        for name, child in module._modules.items():
            entry["children"][name] = None if child is None else self.module(child, f"{prefix}{name}.")
        entry["packed_state"] = self._packed_state(module, prefix)
        return entry

    def _packed_state(self, module: nn.Module, prefix: str) -> dict:
        """State-dict entries a module writes itself (torch.ao's packed weights), kept for its own loader."""
        if not any(isinstance(v, torch.ScriptObject) for v in module.__dict__.values()):
            return {}
        state: dict = {}
        module._save_to_state_dict(state, "", keep_vars=False)
        return {name: self.value(value, f"{prefix}#{name}") for name, value in state.items()
                if name not in module._parameters and name not in module._buffers}

    def value(self, value, key: str):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            return {"tensor": self.tensor(value, key)}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"device": "cpu"}
        if isinstance(value, torch.Size):
            return {"size": list(value)}
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self.value(v, f"{key}.{i}") for i, v in enumerate(value)]
            return {type(value).__name__ if not isinstance(value, torch.Size) else "tuple": items}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self.value(v, f"{key}.{k}") for k, v in value.items()}}
        if hasattr(value, "to_dict") and hasattr(value, "from_dict"):  # a Hugging Face config
            # the attention implementation is private (not in the dict) but decides the causal mask
            return {"config": [_import_path(type(value)), json.loads(value.to_json_string(False)),
                               getattr(value, "_attn_implementation", None)]}
        if type(value).__module__.startswith("compression."):  # the lab's own objects (a model's tokenizer)
            state = value.__getstate__()
            return {"object": [_import_path(type(value)), self.value({} if state is None else state, key)]}
        if isinstance(value, functools.partial):  # torchvision's norm_layer=partial(nn.LayerNorm, eps=1e-6)
            return {"partial": [self.value(value.func, f"{key}.func"), self.value(list(value.args), f"{key}.args"),
                                self.value(dict(value.keywords), f"{key}.keywords")]}
        if isinstance(value, type):
            return {"ref": _import_path(value)}  # a class of torch's own (a norm layer to build, an activation)
        if id(value) in _FUNCTION_NAMES and _FUNCTIONS[_FUNCTION_NAMES[id(value)]] is value:
            return {"function": _FUNCTION_NAMES[id(value)]}
        raise NotDescribable(f"attribute '{key}' is a {type(value).__name__}")


# ----------------------------------------------------------------------------------------------------- reading

def decode(data: bytes, name: str = "model file") -> nn.Module:
    """A model from a file written by encode; anything else (a pickle, a foreign class) is one LabError."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0][:160] if str(err) else ""
        raise LabError(f"The {name} holds pickled code, which the lab never runs ({first}); it was not written by "
                       "this lab, so it is refused.") from None
    except Exception:
        raise LabError(f"The {name} is not a readable Compression Lab model file (corrupt or truncated).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LabError(f"The {name} is not a Compression Lab model file ({FORMAT}).")
    try:
        return _Reader(payload["tensors"]).module(json.loads(payload["manifest"]), "").eval()
    except (LabError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise LabError(f"The {name} does not describe a model this lab can build: {err}") from None


def _resolve(path: str):
    """An attribute by dotted path, importing only from the allowed packages."""
    if not path.startswith(tuple(p + "." for p in ALLOWED_PACKAGES)):
        raise LabError(f"{path} is not from {', '.join(ALLOWED_PACKAGES)}")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise LabError(f"{path} cannot be imported")


class _Reader:
    def __init__(self, tensors: dict):
        self.tensors = tensors
        self.modules: dict[str, nn.Module] = {}
        self.configs: dict[str, object] = {}
        self.parameters: dict[str, nn.Parameter] = {}

    def tensor(self, ref: dict) -> torch.Tensor:
        return self.tensors[_key(ref)]

    def parameter(self, ref: dict) -> nn.Parameter:
        """One Parameter per stored tensor, so tied weights are the same Parameter again."""
        key = _key(ref)
        if key not in self.parameters:
            self.parameters[key] = nn.Parameter(self.tensors[key], ref["grad"])
        return self.parameters[key]

    def module(self, entry: dict, prefix: str) -> nn.Module:
        if "same_as" in entry:
            return self.modules[entry["same_as"]]
        cls = _class(entry["class"])
        if not issubclass(cls, nn.Module):
            raise LabError(f"{entry['class']} is not a module class")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        self.modules[prefix] = module
        for name, value in entry["attrs"].items():
            if callable(getattr(cls, name, None)):
                raise LabError(f"attribute {name} would replace a method of {entry['class']}")
            object.__setattr__(module, name, self.value(value))
        for name, ref in entry["params"].items():
            module._parameters[name] = None if ref is None else self.parameter(ref)
        for name, ref in entry["buffers"].items():
            module._buffers[name] = None if ref is None else self.tensor(ref)
        module._non_persistent_buffers_set = set(entry["non_persistent"])
        for name, child in entry["children"].items():
            module._modules[name] = None if child is None else self.module(child, f"{prefix}{name}.")
        if entry.get("packed_state"):
            self._load_packed(module, entry["packed_state"])
        return module

    def _load_packed(self, module: nn.Module, packed: dict) -> None:
        state = {name: self.value(value) for name, value in packed.items()}
        for name, value in {**module._parameters, **module._buffers}.items():
            if value is not None:
                state[name] = value
        metadata = {"version": getattr(module, "_version", None)}  # the layout this class writes today
        module._load_from_state_dict(state, "", metadata, True, [], [], [])

    def value(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        (kind, inner), = value.items()
        if kind == "tensor":
            return self.tensor(inner)
        if kind == "dtype":
            return _DTYPES[inner]
        if kind == "device":
            return torch.device("cpu")
        if kind == "size":
            return torch.Size(inner)
        if kind in ("list", "tuple", "set", "frozenset"):
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](
                self.value(v) for v in inner)
        if kind == "dict":
            return {k: self.value(v) for k, v in inner.items()}
        if kind == "config":  # one object for every module that shares it, as when the model was made
            key = json.dumps(inner, sort_keys=True)
            if key not in self.configs:
                self.configs[key] = _class(inner[0]).from_dict(inner[1])
                if inner[2]:
                    self.configs[key]._attn_implementation = inner[2]
            return self.configs[key]
        if kind == "object":
            return _lab_object(inner[0], self.value(inner[1]))
        if kind == "ref":
            return _class(inner)
        if kind == "function":
            if inner not in _FUNCTIONS:
                raise LabError(f"{inner} is not one of the functions a model file may name")
            return _FUNCTIONS[inner]
        if kind == "partial":  # of a class (a norm layer) or of a listed function (GELU's tanh approximation)
            (func_kind, name), = inner[0].items()
            if func_kind not in ("ref", "function"):
                raise LabError(f"a partial of a {func_kind}")
            return functools.partial(self.value(inner[0]), *self.value(inner[1]), **self.value(inner[2]))
        raise LabError(f"unknown attribute kind {kind}")


def _key(ref: dict) -> str:
    """The stored tensor a reference names: its own, or the one it is tied to."""
    return ref["alias"] if "alias" in ref else ref["key"]


def _class(path: str) -> type:
    """A class from the allowed packages; anything else (a function, os.system reached as torch.os.system) is
    refused."""
    obj = _resolve(path)
    if not isinstance(obj, type) or not obj.__module__.startswith(tuple(p + "." for p in ALLOWED_PACKAGES)):
        raise LabError(f"{path} is not a class of {', '.join(ALLOWED_PACKAGES)}")
    return obj


def _lab_object(path: str, state: dict):
    """An object of the lab's own classes, restored through its own __setstate__ (or its attributes)."""
    if not path.startswith("compression."):
        raise LabError(f"{path} is not one of the lab's classes")
    cls = _class(path)
    obj = cls.__new__(cls)
    if hasattr(cls, "__setstate__"):
        obj.__setstate__(state)
    else:
        obj.__dict__.update(state)
    return obj
