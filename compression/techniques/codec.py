"""Deep-Compression storage (Han et al., 2016): pruning -> trained weight sharing -> sparse indices -> entropy coding.

Pruning (elsewhere) leaves most weights exactly zero. `share_weights` then replaces every remaining weight of a
layer by one of k = 2**bits trainable centroids, so a weight is stored as a `bits`-bit code plus one shared
float; fine-tuning moves the centroids, never the pruned zeros. `fold_shared` bakes the centroids back into
plain weights, and `encode_state_dict` writes the file:

    b"CLDC1" | u32 LE header length | UTF-8 JSON header | binary payload | u32 LE CRC-32 of everything before it

The JSON header is {"v": 1, "meta": <caller's header>, "bits": b, "tensors": [entry, ...]}; each entry has
"n" (name), "s" (shape), "d" (dtype), "e" (encoding) and "st" (its streams, in payload order, as one
string "<method><byte length>,..." e.g. "p32,z25,h1651": offsets are the running sum). Encodings:
  * "shared": codebook + positions + codes. The codebook (k values, bit-exact in the tensor's dtype) is stored
    as byte planes; positions (row-major) are RELATIVE indices: one 8-bit symbol per non-zero = the number of
    zeros skipped before it, and the filler symbol 255 = "skip 255 zeros, no weight here" (the paper's filler
    entry for gaps that do not fit 8 bits; here it carries no code); codes are `bits`-bit indices into the
    codebook. "Zero" means the bit pattern 0: a -0.0 is a codebook value, so decoding is bit-exact.
    Extra keys: "k" (codebook size), "ng" (gap symbols incl. fillers; the non-zero count follows from them).
  * "raw": the tensor's bytes split into byte planes (plane j = byte j of every element: exponents compress,
    mantissas do not), as "a" (the stored dtype): float16/bfloat16 when that is exactly lossless for a float32
    tensor (checked bit for bit), else the tensor's own dtype. Small tensors (biases, BatchNorm) and
    non-float tensors (num_batches_tracked) take this path, so they stay exact.
Every stream is a sequence of byte symbols coded by one of: "p" packed at its natural width (`bits` for codes,
8 otherwise), "h" canonical Huffman (1 byte max symbol, 4-bit code lengths, then the MSB-first bitstream) or
"z" raw LZMA2 (preset 9 | extreme, lc=lp=pb=0); the encoder keeps the smallest per stream.

Measured (tests/test_codec.py; sizes in bytes, ratio vs torch.save of the dense fp32 state dict):
  64-300-100-10 MLP on digits, 92 % pruned by global magnitude + retrained, 5-bit shared + centroids tuned:
    dense 205,205; "none" (packed) 9,166 = 22.4x; "huffman" 6,957 = 29.5x; "lzma" 6,989 = 29.4x;
    "auto" 6,864 = 29.9x. Fixed costs dominate at this size: exact fp32 biases ~1.5 KB, codebooks ~0.36 KB,
    JSON header ~0.6 KB (35 % of the file). The 4,016 non-zero weights take 4.4 KB (8.8 bits each: position
    + code) against 4.2 KB of empirical order-0 entropy of their gaps and codes, a bound that ignores the
    cost of the code tables.
  The same pipeline on LeNet-300-100's own shape (784 inputs): "none" 28.5x, "huffman" 40.9x, "lzma" 41.2x,
    "auto" 41.5x (the paper: 40x). Huffman wins on short streams (LZMA's adaptive model has not converged yet),
    LZMA on long or degenerate ones (fractional bits; all gaps 0 in dense layers), so "auto" keeps both.
No pickle anywhere: decoding parses JSON and raw little-endian arrays, so a hostile file cannot run code.
"""
from __future__ import annotations

import copy
import heapq
import json
import lzma
import math
import struct
import zlib

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

MAGIC = b"CLDC1"
VERSION = 1
MIN_SHARED_NUMEL = 64          # below this a codebook costs more than it saves: store raw
_MAX_HUFFMAN_BITS = 15         # code lengths fit a nibble, decode table fits 2**15 entries
_RAW_CHECK_NUMEL = 1 << 16     # up to this size a shared-eligible tensor is also tried raw, the smaller kept
_MAX_NUMEL = 1 << 34           # decoding refuses larger tensors rather than allocate them (64 GiB of float32)
_FILLER = 255                  # gap symbol meaning "255 zeros, no weight"
_ENTROPY = {"auto": "phz", "huffman": "ph", "lzma": "pz", "none": "p"}
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)}
_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64,
             torch.float16: torch.int16, torch.bfloat16: torch.int16}
_NOT_OURS = "not a Compression Lab compressed file"


# ----------------------------------------------------------------------------------------------- weight sharing

class SharedWeight(nn.Module):
    """weight = where(mask, centroids[index], 0): the gradient of each centroid is the sum of its weights' gradients.

    That sum is exactly the paper's centroid update, so any optimizer over model.parameters() fine-tunes the
    codebook, and masked (pruned) weights cannot move because they do not depend on any parameter.
    """

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("index", index)
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # the original is ignored: the codebook is the weight
        zero = torch.zeros((), dtype=self.centroids.dtype, device=self.centroids.device)
        return torch.where(self.mask, self.centroids[self.index], zero)


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Linear init between min and max (the paper's best: it keeps the rare large weights represented), then Lloyd.

    In one dimension sorted centroids stay sorted, so assignment is a binary search on the midpoints.
    Empty clusters keep their position (they can still be reached after fine-tuning moves neighbours).
    """
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
        counts = np.bincount(index, minlength=k)
        sums = np.bincount(index, weights=values, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.array_equal(updated, centroids):
            break
        centroids = updated
    index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
    return centroids, index


def share_weights(model: nn.Module, bits: int = 5, *, min_numel: int = 256,
                  layers: list[str] | None = None) -> tuple[nn.Module, dict]:
    """A deep copy whose Conv2d/Linear weights (>= min_numel elements) are `2**bits` trainable centroids each.

    Why a copy: the caller keeps the model it measured as the parent of this run. Zero weights (pruned earlier)
    stay exactly zero and are not clustered: they are the separate, fixed "zero" code that sparse storage skips.
    `layers` restricts sharing to those module names. Train the copy as usual to fine-tune the centroids, then
    `fold_shared` it before `encode_state_dict`. Returns (copy, {"bits", "layers": [{"layer", "bits",
    "clusters" (non-empty clusters), "nonzero", "numel"}]}).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 1 to 8 (2 to 256 shared values per layer), got {bits!r}")
    if min_numel < 0:
        raise ValueError(f"min_numel must be >= 0, got {min_numel}")
    shared = copy.deepcopy(model)
    modules = dict(shared.named_modules())
    if layers is not None:
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; layers are module names such as {list(modules)[1:6]}")
    k = 2 ** bits
    report = []
    for name, module in modules.items():
        if layers is not None and name not in layers:
            continue
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or module.weight.numel() < min_numel:
            continue
        if parametrize.is_parametrized(module, "weight"):
            raise ValueError(f"layer '{name}' already has a parametrized weight (shared twice?)")
        weight = module.weight.detach()
        mask = weight != 0
        values = weight[mask].double().cpu().numpy()
        if values.size:
            centroids, index_nz = _kmeans_1d(values, k)
        else:
            centroids, index_nz = np.zeros(k), np.zeros(0, dtype=np.int64)
        index = torch.zeros(weight.shape, dtype=torch.long, device=weight.device)
        index[mask] = torch.from_numpy(index_nz).to(weight.device)
        parametrization = SharedWeight(torch.tensor(centroids, dtype=weight.dtype, device=weight.device),
                                       index, mask)
        module.weight.requires_grad_(False)  # the original is kept only as parametrize's storage, never trained
        parametrize.register_parametrization(module, "weight", parametrization)
        report.append({"layer": name, "bits": bits, "clusters": int(np.unique(index_nz).size),
                       "nonzero": int(values.size), "numel": int(weight.numel())})
    return shared, {"bits": bits, "layers": report}


def fold_shared(model: nn.Module) -> nn.Module:
    """Bake the centroids into plain weights, in place, and return the model.

    Why: the file stores plain tensors; after folding each shared weight holds only centroid values
    (<= 2**bits distinct non-zeros), which `encode_state_dict` recognises and codes as codebook + indices.
    The weights become trainable again (sharing froze the originals).
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and any(
                isinstance(p, SharedWeight) for p in module.parametrizations["weight"]):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.weight.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------------------------- symbol streams

def _pack(symbols: np.ndarray, width: int) -> bytes:
    if width == 8:
        return symbols.tobytes()
    bits = np.unpackbits(symbols.reshape(-1, 1), axis=1)[:, 8 - width:]
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, width: int) -> np.ndarray:
    if len(data) != (count * width + 7) // 8:
        raise ValueError("corrupt stream: packed length does not match its symbol count")
    if width == 8:
        return np.frombuffer(data, dtype=np.uint8)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count * width].reshape(count, width)
    return np.packbits(np.pad(bits, ((0, 0), (8 - width, 0))), axis=1).reshape(-1)


def _huffman_lengths(freq: np.ndarray) -> np.ndarray:
    """Code length per symbol (0 = unused), limited to 15 bits by halving the counts until it fits."""
    freq = freq.astype(np.int64)
    while True:
        lengths = np.zeros(freq.size, dtype=np.int64)
        used = np.flatnonzero(freq)
        if used.size == 1:
            lengths[used] = 1
            return lengths
        heap = [(int(freq[s]), i, [int(s)]) for i, s in enumerate(used)]
        heapq.heapify(heap)
        tiebreak = len(heap)
        while len(heap) > 1:
            f1, _, s1 = heapq.heappop(heap)
            f2, _, s2 = heapq.heappop(heap)
            lengths[s1 + s2] += 1
            heapq.heappush(heap, (f1 + f2, tiebreak, s1 + s2))
            tiebreak += 1
        if lengths.max() <= _MAX_HUFFMAN_BITS:
            return lengths
        freq = np.where(freq > 0, np.maximum(freq >> 1, 1), 0)


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    codes = np.zeros(lengths.size, dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        previous = int(lengths[symbol])
        codes[symbol] = code
        code += 1
    return codes


def _huffman_encode(symbols: np.ndarray) -> bytes:
    alphabet = int(symbols.max()) + 1
    lengths = _huffman_lengths(np.bincount(symbols, minlength=alphabet))
    codes = _canonical_codes(lengths)
    nibbles = np.zeros(alphabet + alphabet % 2, dtype=np.uint8)
    nibbles[:alphabet] = lengths
    table = bytes([alphabet - 1]) + (nibbles[0::2] << 4 | nibbles[1::2]).astype(np.uint8).tobytes()
    width = int(lengths.max())
    sym_len, sym_code = lengths[symbols].astype(np.int32), codes[symbols].astype(np.int32)
    bits = np.zeros((symbols.size, width), dtype=np.uint8)
    for j in range(width):  # bit j (MSB first) of each symbol's code, where the code is that long
        bits[:, j] = (sym_code >> np.maximum(sym_len - 1 - j, 0)) & 1
    valid = np.arange(width, dtype=np.int32)[None, :] < sym_len[:, None]
    return table + np.packbits(bits[valid]).tobytes()


def _huffman_decode(data: bytes, count: int) -> np.ndarray:
    alphabet = data[0] + 1
    table_size = 1 + (alphabet + 1) // 2
    if len(data) < table_size:
        raise ValueError("corrupt Huffman stream: truncated code-length table")
    packed = np.frombuffer(data[1:table_size], dtype=np.uint8)
    lengths = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[:alphabet].astype(np.int64)
    used = lengths > 0
    if not used.any() or (np.ldexp(1.0, -lengths[used])).sum() > 1.0:
        raise ValueError("corrupt Huffman stream: invalid code lengths")
    width = int(lengths.max())
    codes = _canonical_codes(lengths)
    symbol_of = np.zeros(1 << width, dtype=np.uint8)
    length_of = np.zeros(1 << width, dtype=np.int64)
    for symbol in np.flatnonzero(used):
        start = int(codes[symbol]) << (width - int(lengths[symbol]))
        stop = (int(codes[symbol]) + 1) << (width - int(lengths[symbol]))
        symbol_of[start:stop], length_of[start:stop] = symbol, lengths[symbol]
    bits = np.unpackbits(np.frombuffer(data[table_size:], dtype=np.uint8))
    total = bits.size
    padded = np.concatenate([bits, np.zeros(width, dtype=np.uint8)]).astype(np.int32)
    windows = np.zeros(total, dtype=np.int32)
    for j in range(width):  # windows[p] = the next `width` bits from bit p
        windows = (windows << 1) | padded[j:j + total]
    steps = length_of[windows].tolist()
    starts = [0] * count
    position = 0
    for i in range(count):
        if position >= total or steps[position] == 0:
            raise ValueError("corrupt Huffman stream: ran past its data or hit an unused code")
        starts[i] = position
        position += steps[position]
    if total - position >= 8:
        raise ValueError("corrupt Huffman stream: trailing data")
    return symbol_of[windows[np.asarray(starts, dtype=np.int64)]] if count else np.zeros(0, dtype=np.uint8)


def _lzma_filters(size: int, **options) -> list[dict]:
    dict_size = min(max(4096, 1 << max(size - 1, 1).bit_length()), 1 << 26)  # both sides derive it from the size
    return [{"id": lzma.FILTER_LZMA2, "dict_size": dict_size, **options}]


def _lzma_encode(symbols: np.ndarray) -> bytes:
    options = {"preset": 9 | lzma.PRESET_EXTREME, "lc": 0, "lp": 0, "pb": 0}
    return lzma.compress(symbols.tobytes(), format=lzma.FORMAT_RAW, filters=_lzma_filters(symbols.size, **options))


def _lzma_decode(data: bytes, count: int) -> np.ndarray:
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(count))
    out = decompressor.decompress(data, max_length=count)
    if len(out) == count and not decompressor.eof and decompressor.decompress(b"", max_length=1):
        raise ValueError("corrupt LZMA stream: longer than its symbol count")
    if len(out) != count or not decompressor.eof or decompressor.unused_data:
        raise ValueError("corrupt LZMA stream: wrong length")
    return np.frombuffer(out, dtype=np.uint8)


def _encode_stream(symbols: np.ndarray, width: int, methods: str) -> tuple[str, bytes]:
    """The smallest of the allowed codings of one symbol stream ("p" packed always competes)."""
    candidates = [("p", _pack(symbols, width))]
    if symbols.size:
        if "h" in methods:
            candidates.append(("h", _huffman_encode(symbols)))
        if "z" in methods:
            candidates.append(("z", _lzma_encode(symbols)))
    return min(candidates, key=lambda c: len(c[1]))


def _decode_stream(method: str, data: bytes, count: int, width: int) -> np.ndarray:
    if method == "p":
        return _unpack(data, count, width)
    if count == 0:
        raise ValueError("corrupt stream: an empty stream must be packed")
    if method == "h":
        return _huffman_decode(data, count)
    if method == "z":
        return _lzma_decode(data, count)
    raise ValueError(f"corrupt stream: unknown coding {method!r}")


# ------------------------------------------------------------------------------------------------ tensor codecs

def _planes(t: torch.Tensor) -> list[np.ndarray]:
    """Byte j of every element, for each j: a float's sign/exponent byte is far more predictable than its mantissa."""
    raw = t.reshape(-1).view(torch.uint8).numpy().reshape(t.numel(), t.element_size())
    return [np.ascontiguousarray(raw[:, j]) for j in range(t.element_size())]


def _from_planes(planes: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    if not planes or planes[0].size == 0:
        return torch.zeros(0, dtype=dtype)
    raw = np.stack(planes, axis=1).reshape(-1)
    return torch.frombuffer(bytearray(raw.tobytes()), dtype=torch.uint8).view(dtype).clone()


def _smallest_lossless(t: torch.Tensor) -> torch.Tensor:
    """float32 -> float16 or bfloat16 only when every element round-trips bit for bit."""
    if t.dtype == torch.float32:
        bits = t.view(torch.int32)
        for narrow in (torch.float16, torch.bfloat16):
            candidate = t.to(narrow)
            if torch.equal(candidate.to(torch.float32).view(torch.int32), bits):
                return candidate
    return t


def _encode_raw(t: torch.Tensor, methods: str) -> tuple[dict, list[bytes]]:
    stored = _smallest_lossless(t) if t.is_floating_point() else t
    streams = [_encode_stream(plane, 8, methods) for plane in _planes(stored)]
    entry = {"e": "raw"}
    if stored.dtype != t.dtype:
        entry["a"] = str(stored.dtype).removeprefix("torch.")
    return entry, streams


def _encode_shared(t: torch.Tensor, bits: int, methods: str) -> tuple[dict, list] | None:
    """Codebook + relative positions + codes, or None when the tensor has more than 2**bits distinct non-zeros."""
    flat = t.reshape(-1).view(_INT_VIEW[t.dtype])
    positions = torch.nonzero(flat).reshape(-1)  # bit pattern != 0: -0.0 is kept as a value, so decoding is exact
    values = flat[positions]
    codebook = torch.unique(values)
    if codebook.numel() > 2 ** bits:
        return None
    codes = torch.searchsorted(codebook, values).numpy().astype(np.uint8)
    skipped = np.diff(positions.numpy(), prepend=-1) - 1
    fillers = skipped // _FILLER
    gaps = np.full(int(fillers.sum()) + skipped.size, _FILLER, dtype=np.uint8)
    gaps[np.cumsum(fillers + 1) - 1] = skipped % _FILLER  # each weight's gap goes after its fillers
    streams = [_encode_stream(p, 8, methods) for p in _planes(codebook.view(t.dtype))]
    streams.append(_encode_stream(gaps, 8, methods))
    streams.append(_encode_stream(codes, bits, methods))
    entry = {"e": "shared", "k": int(codebook.numel()), "ng": int(gaps.size)}
    return entry, streams


def _payload_size(streams) -> int:
    return sum(len(data) for _, data in streams)


def encode_state_dict(state: dict[str, torch.Tensor], *, bits: int = 5, header: dict | None = None,
                      entropy: str = "auto") -> bytes:
    """The compressed file for `state` (fold shared models first), bit-exact under `decode_state_dict`.

    Why this layout: after pruning and sharing, a weight is a position and a `bits`-bit code; relative positions
    are small numbers, and both streams are skewed, so entropy coding removes what fixed-width packing leaves.
    A float tensor with <= 2**bits distinct non-zero values and >= 64 elements is stored as codebook +
    relative indices + codes (when that is smaller than raw); anything else raw, exactly (see module docstring).
    `entropy`: "auto" (smallest of packed/Huffman/LZMA per stream), "huffman", "lzma" or "none" (packed only).
    `header` (JSON-serialisable) comes back as the meta of `decode_state_dict`.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 1 to 8 (2 to 256 shared values per tensor), got {bits!r}")
    if entropy not in _ENTROPY:
        raise ValueError(f"entropy must be one of {list(_ENTROPY)}, got {entropy!r}")
    if header is not None and not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    methods = _ENTROPY[entropy]
    entries, payload = [], []
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state must map names to tensors; got {type(name).__name__} -> {type(tensor).__name__}")
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _DTYPES or tensor.layout != torch.strided or tensor.is_quantized:
            raise ValueError(f"tensor '{name}': cannot store {tensor.dtype} / {tensor.layout} tensors")
        t = tensor.detach().cpu().contiguous().clone()
        shared = None
        if t.is_floating_point() and t.numel() >= MIN_SHARED_NUMEL:
            shared = _encode_shared(t, bits, methods)
        if shared is None:
            entry, streams = _encode_raw(t, methods)
        elif t.numel() > _RAW_CHECK_NUMEL:  # shared <= 8 + bits bits/element before entropy coding, raw >= 16
            entry, streams = shared
        else:  # small tensors: a codebook of up to 256 values may cost more than raw (e.g. float16-exact values)
            entry, streams = min(shared, _encode_raw(t, methods), key=lambda c: _payload_size(c[1]))
        entries.append({"n": name, "s": list(t.shape), "d": dtype, **entry,
                        "st": ",".join(f"{method}{len(data)}" for method, data in streams)})
        payload.extend(data for _, data in streams)
    try:
        head = json.dumps({"v": VERSION, "bits": bits, "meta": header or {}, "tensors": entries},
                          separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"header must be JSON-serialisable: {e}") from e
    body = MAGIC + struct.pack("<I", len(head)) + head + b"".join(payload)
    return body + struct.pack("<I", zlib.crc32(body))


def compressed_size(state: dict[str, torch.Tensor], *, bits: int = 5) -> int:
    """Bytes of the compressed file: the number a size/accuracy trade-off is plotted against."""
    return len(encode_state_dict(state, bits=bits))


# ----------------------------------------------------------------------------------------------------- decoding

def _decode_entry(entry: dict, streams: list[tuple[str, bytes]], bits: int) -> torch.Tensor:
    dtype = _DTYPES[entry["d"]]
    shape = [int(x) for x in entry["s"]]
    numel = math.prod(shape)
    if any(x < 0 for x in shape) or numel > _MAX_NUMEL:
        raise ValueError("corrupt header: impossible shape")
    if entry["e"] == "raw":
        stored = _DTYPES[entry.get("a", entry["d"])]
        size = torch.empty(0, dtype=stored).element_size()
        narrowed = dtype == torch.float32 and stored in (torch.float16, torch.bfloat16)
        if len(streams) != size or (stored != dtype and not narrowed):
            raise ValueError("corrupt header: raw tensor streams do not match its dtype")
        planes = [_decode_stream(m, data, numel, 8) for m, data in streams]
        return _from_planes(planes, stored).to(dtype).reshape(shape)
    if entry["e"] == "shared":
        k, ngaps = int(entry["k"]), int(entry["ng"])
        size = torch.empty(0, dtype=dtype).element_size()
        if dtype not in _INT_VIEW or len(streams) != size + 2 or not 0 <= k <= 2 ** bits or ngaps < 0:
            raise ValueError("corrupt header: shared tensor entry is inconsistent")
        codebook = _from_planes([_decode_stream(m, d, k, 8) for m, d in streams[:size]], dtype)
        gaps = _decode_stream(*streams[size], ngaps, 8).astype(np.int64)
        weights = gaps != _FILLER
        nnz = int(weights.sum())
        codes = _decode_stream(*streams[size + 1], nnz, bits).astype(np.int64)
        ends = np.cumsum(np.where(weights, gaps + 1, _FILLER))
        positions = ends[weights] - 1
        if positions.size != nnz or (nnz and (positions[-1] >= numel or codes.max() >= k)):
            raise ValueError("corrupt stream: positions or codes out of range")
        flat = torch.zeros(numel, dtype=_INT_VIEW[dtype])
        if nnz:
            flat[torch.from_numpy(positions)] = codebook.view(_INT_VIEW[dtype])[torch.from_numpy(codes)]
        return flat.view(dtype).reshape(shape)
    raise ValueError(f"corrupt header: unknown encoding {entry['e']!r}")


def decode_state_dict(blob: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) from `encode_state_dict`'s bytes, bit-exact; ValueError for anything else.

    Why only ValueError: callers load user-supplied files and must tell "bad file" from a bug; every parsing
    error (struct, JSON, LZMA, indexing) is reported as a corrupt file. Nothing here can execute code.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError(_NOT_OURS)
    blob = bytes(blob)
    if len(blob) < len(MAGIC) + 8 or not blob.startswith(MAGIC):
        raise ValueError(_NOT_OURS)
    body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError("corrupt Compression Lab file: checksum mismatch (truncated or modified)")
    try:
        (head_len,) = struct.unpack_from("<I", body, len(MAGIC))
        start = len(MAGIC) + 4
        head = json.loads(body[start:start + head_len].decode("utf-8"))
        if head.get("v") != VERSION:
            raise ValueError(f"corrupt Compression Lab file: unsupported version {head.get('v')!r}")
        bits = head["bits"]
        if not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError("corrupt Compression Lab file: bits out of range")
        offset = start + head_len
        state = {}
        for entry in head["tensors"]:
            streams = []
            for stream in entry["st"].split(",") if entry["st"] else []:
                method, length = stream[0], int(stream[1:])
                if length < 0 or offset + length > len(body):
                    raise ValueError("corrupt Compression Lab file: a stream runs past the end")
                streams.append((method, body[offset:offset + length]))
                offset += length
            state[str(entry["n"])] = _decode_entry(entry, streams, bits)
        if offset != len(body):
            raise ValueError("corrupt Compression Lab file: unread bytes after the last stream")
        meta = head["meta"]
    except Exception as e:  # struct/json/lzma/numpy/torch/index errors all mean the same thing here
        if isinstance(e, ValueError) and str(e).startswith("corrupt"):
            raise
        raise ValueError(f"corrupt Compression Lab file: {type(e).__name__}: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError("corrupt Compression Lab file: meta is not an object")
    return state, meta
