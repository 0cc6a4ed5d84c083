"""What crosses the lab's border: exported models (export), the lab's compressed file format (compressed), and
what users bring (upload: a state dict, a TorchScript or a Hugging Face folder; data_upload: a zip of images)."""
