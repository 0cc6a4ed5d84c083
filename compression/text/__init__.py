"""Language models: text data sets, the `gpt` and `hf:` models, their training and their measurement.

Layered like the image side: text data and models register in core's tables; labs train, store and compare them.
"""
