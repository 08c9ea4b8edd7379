"""The lowest layer: what every other layer shares and nothing Keras-model
specific. Architecture tables as data (`architectures`), image decoding
(`images`), normalization conventions and the image policy a preset
records (`normalization`), label decoding (`decode`), argument checks
(`validation`) and file-system helpers (`utils`)."""
