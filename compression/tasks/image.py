"""The image-classification task: accuracy (higher is better, changes in points), one timed phase (a batch of
images), every lab."""
from __future__ import annotations

from ..search.space import IMAGE
from .base import Quality, Task, register_task


class ImageTask(Task):
    name = "image"
    title = "image classification"
    quality = Quality("accuracy", "test accuracy", True, "pt", "accuracy drop")
    phases = (None,)
    labs = frozenset({"train", "prune", "quantize", "distill", "search", "plan", "demo", "pipeline", "upload"})
    search_data = IMAGE
    default_model = "lenet5"
    model_noun = "an image model"
    data_noun = "an image data set"
    model_hint = "pick an image model (lenet5, cnn, mlp, or tv.NAME)"
    data_hint = "pick an image data set (digits, mnist, or imagefolder:PATH for your own)"
    default_prune_method = "global_l1"
    finetune_epochs = 5          # after pruning: the sweep's children recover within a few epochs on digits

    def owns_dataset(self, name: str) -> bool:
        return True  # the default task: any data set no other task claims

    def owns_model(self, name: str) -> bool:
        return True


IMAGE_TASK = register_task(ImageTask())
