"""Bring your own model: torchvision's resnet18 (10 classes, random weights) pruned with channel_l1 at 50% through
the model-first API, and its speed-up at batch 64 on 3x32x32 images from compression.speedup (interleaved, paired
timing with a 95% CI, the other processes' load and the machine). Issue 14's goal: at least 1.5x on 2 CPU cores.
"""
import _common

import torch
import torchvision

import compression

BATCH = 64

if __name__ == "__main__":
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    images = torch.utils.data.TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
    pruned = compression.prune(model, torch.utils.data.DataLoader(images, batch_size=BATCH), sparsity=0.5)
    timing = compression.speedup(model, pruned, torch.randn(BATCH, 3, 32, 32), rounds=11)
    params = sum(p.numel() for p in pruned.parameters()) / sum(p.numel() for p in model.parameters())
    _common.emit({"benchmark": "byo", "model": "torchvision resnet18", "method": "channel_l1", "sparsity": 0.5,
                  "device": "cpu", "batch_size": BATCH, "params_ratio": round(params, 3),
                  "ratio": round(timing["speedup"], 2), "ci95": [round(v, 2) for v in timing["ci95"]],
                  "noisy": timing["noisy"], "load_cores": round(timing.get("load", 0.0), 2),
                  "goals_met": {"speedup_ge_1.5x": timing["ci95"][0] >= 1.5}})
