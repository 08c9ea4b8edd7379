"""Backend-specific speed-ups: the JAX compiled inference call
(`compiled_call`), the PyTorch fused direct run (`direct_call`), BatchNorm
folding (`batch_norm_folding`) and host-side initial weights
(`initializers`). The same outputs as Keras' own path, faster."""
