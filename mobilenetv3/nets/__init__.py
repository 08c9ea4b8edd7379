"""Model definition: the layers, the backbone built from an architecture
table, and the Small/Large aliases. Plain Keras 3; the task heads are in
`mobilenetv3.tasks`, the backend-specific speed-ups in `mobilenetv3.runtime`."""
