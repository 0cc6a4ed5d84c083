"""A model whose forward kills its process as a crashing native kernel would (SIGSEGV). Only ever run in a
timing process: a test sends it there to check that the crash stays there. A module of its own, so that the
timing process can import it to unpickle the model."""
import os
import signal

from torch import nn


class Crashing(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(512, 512)

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGSEGV)
        return self.linear(x)
