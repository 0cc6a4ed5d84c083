"""One fresh timing process (`python -m compression.core.timer_process`): core.timing_pool's child.

It reads requests from stdin (each an 8-byte length, then one pickle) and writes replies to stdout (one pickle
each), and nothing else: prints from anywhere else go to stderr, so they cannot corrupt the channel. A request
that cannot be unpickled here (a model class this process cannot import) is answered with "unportable", and the
parent times that pair itself. Both ends are this program, and the models it
receives are the parent's own objects (never a user's file), so pickle is safe here.

Requests:
- {"kind": "prepare", models, examples, device, mode, threads, block_s, engine}: both sides warmed up and
  calibrated; replies with the calls per block and the timing mode used.
- {"kind": "rounds", "count": n}: one untimed block of each side (this process sat idle while its siblings
  timed, so its caches are cold), then n interleaved rounds; replies with the block times and the load.
- {"kind": "release"}: drop the models.
"""
from __future__ import annotations

import os
import pickle
import sys


def _prepare(state: dict, request: dict) -> dict:
    import torch

    from .timing import prepare_pair
    from .timing_pool import unpack
    _release(state, request)
    torch.set_num_threads(request["threads"])
    if request.get("engine"):
        torch.backends.quantized.engine = request["engine"]
    runner_a, runner_b, n_a, n_b, fallback = prepare_pair(unpack(request["model_a"]), unpack(request["model_b"]),
                                                          request["example_a"], request["example_b"],
                                                          request["device"], request["mode"], request["block_s"])
    state.update(runner_a=runner_a, runner_b=runner_b, n_a=n_a, n_b=n_b, rounds_done=0)
    return {"mode": runner_a.mode, "number_a": n_a, "number_b": n_b, "fallback": fallback}


def _rounds(state: dict, request: dict) -> dict:
    from .timing import LoadSampler, time_rounds
    runner_a, runner_b, n_a, n_b = state["runner_a"], state["runner_b"], state["n_a"], state["n_b"]
    runner_a.block(n_a), runner_b.block(n_b)  # untimed: caches and clocks settle after the idle wait
    a_ms, b_ms = [], []
    with LoadSampler() as sampler:
        time_rounds(runner_a, runner_b, n_a, n_b, request["count"], a_ms, b_ms)
    return {"a_ms": a_ms, "b_ms": b_ms, "load": sampler.load, "wall_s": sampler.wall_s}


def _release(state: dict, request: dict) -> dict:
    for key in ("runner_a", "runner_b"):
        if state.get(key) is not None:
            state[key].close()
    state.clear()  # reference counting frees the tensors now
    return {}


HANDLERS = {"prepare": _prepare, "rounds": _rounds, "release": _release}


def serve() -> None:
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (a library's warning) go to stderr
    import torch  # noqa: F401  the import is the slow part of starting: say "ready" after it
    pickle.dump({"ready": os.getpid()}, replies)
    replies.flush()
    state: dict = {}
    while True:
        header = requests.read(8)
        if len(header) < 8:
            return  # the parent closed the pipe
        payload = requests.read(int.from_bytes(header, "big"))
        try:
            request = pickle.loads(payload)
        except Exception as err:
            reply = {"unportable": f"{type(err).__name__}: {err}"}
        else:
            try:
                reply = HANDLERS[request["kind"]](state, request)
            except Exception as err:  # the parent raises it, in one line
                reply = {"error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"}
        pickle.dump(reply, replies)
        replies.flush()


if __name__ == "__main__":
    serve()
