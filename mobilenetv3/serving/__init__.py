"""Running a task model over many images: `predictor` (a classifier,
detector or segmenter on Keras or on one of its exported runtimes, image
files in, per-image results out), `stream` (parallel decoding in bounded
batches, a progress line), batch prediction and evaluation built on them."""
