// Images prepared as mobilenetv3's Python predictor prepares them
// (mobilenetv3/presets/preprocessing.py: apply_policy), pixel for pixel:
// Pillow's resampling of 8-bit images (its Resample.c: separable filters
// widened by the downscale factor, 22-bit fixed-point coefficients, the
// horizontal pass rounded to 8 bits before the vertical one), Pillow's
// NEAREST (an affine scale), torchvision's shorter-side resize and centre
// crop. A browser's canvas scaling differs from Pillow's, so it is not used.
// Pure functions, no DOM: Node imports this file too (the tests compare it
// with Pillow).

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

const FILTERS = {
  bilinear: { support: 1.0, fn: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
  bicubic: {
    support: 2.0,
    fn: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc.
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    const row = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) {
      row[x] = filter.fn((x + xmin - center + 0.5) * ss);
      ww += row[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0.0 ? row[x] / ww : row[x];
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(value) {
  if (value >= ONE * 256) return 255;
  if (value <= 0) return 0;
  return Math.floor(value / ONE);
}

function resampleHorizontal(image, outWidth, filter) {
  const { width, height, data } = image;
  const { ksize, bounds, kk } = coefficients(width, outWidth, filter);
  const out = new Uint8Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
      let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
      for (let x = 0; x < xmax; x++) {
        const k = kk[xx * ksize + x], i = (y * width + x + xmin) * 3;
        s0 += data[i] * k; s1 += data[i + 1] * k; s2 += data[i + 2] * k;
      }
      const o = (y * outWidth + xx) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { width: outWidth, height, data: out };
}

function resampleVertical(image, outHeight, filter) {
  const { width, height, data } = image;
  const { ksize, bounds, kk } = coefficients(height, outHeight, filter);
  const out = new Uint8Array(width * outHeight * 3);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
    for (let x = 0; x < width; x++) {
      let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
      for (let y = 0; y < ymax; y++) {
        const k = kk[yy * ksize + y], i = ((y + ymin) * width + x) * 3;
        s0 += data[i] * k; s1 += data[i + 1] * k; s2 += data[i + 2] * k;
      }
      const o = (yy * width + x) * 3;
      out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
    }
  }
  return { width, height: outHeight, data: out };
}

// Pillow's NEAREST resize: an affine scale sampling at accumulated centres.
function resizeNearest(image, outWidth, outHeight) {
  const { width, height, data } = image;
  const coord = (v) => (v < 0.0 ? -1 : Math.trunc(v));
  const ax = width / outWidth, ay = height / outHeight;
  const xs = new Int32Array(outWidth);
  let xo = ax * 0.5;
  for (let x = 0; x < outWidth; x++) { xs[x] = Math.min(Math.max(coord(xo), 0), width - 1); xo += ax; }
  const out = new Uint8Array(outWidth * outHeight * 3);
  let yo = ay * 0.5;
  for (let y = 0; y < outHeight; y++) {
    const yi = Math.min(Math.max(coord(yo), 0), height - 1);
    for (let x = 0; x < outWidth; x++) {
      const i = (yi * width + xs[x]) * 3, o = (y * outWidth + x) * 3;
      out[o] = data[i]; out[o + 1] = data[i + 1]; out[o + 2] = data[i + 2];
    }
    yo += ay;
  }
  return { width: outWidth, height: outHeight, data: out };
}

/** An RGB image `{width, height, data: Uint8Array (h*w*3)}` resized as
 * Pillow's `Image.resize((width, height), interpolation)`. */
export function resize(image, width, height, interpolation) {
  if (image.width === width && image.height === height) return image;
  if (interpolation === "nearest") return resizeNearest(image, width, height);
  const filter = FILTERS[interpolation];
  if (!filter) throw new Error(`interpolation must be one of bilinear, bicubic, nearest; got ${interpolation}`);
  let out = image;
  if (width !== image.width) out = resampleHorizontal(out, width, filter);
  if (height !== image.height) out = resampleVertical(out, height, filter);
  return out;
}

// Python's round(): halves to even (the crop offsets are whole or halves).
function roundHalfEven(value) {
  const floor = Math.floor(value), diff = value - floor;
  if (diff !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

function crop(image, left, top, size) {
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const start = ((y + top) * image.width + left) * 3;
    out.set(image.data.subarray(start, start + size * 3), y * size * 3);
  }
  return { width: size, height: size, data: out };
}

/** RGBA pixels (a canvas' ImageData) as an RGB image, alpha dropped. */
export function rgbaToRgb(rgba, width, height) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height * 4; i += 4, j += 3) {
    data[j] = rgba[i]; data[j + 1] = rgba[i + 1]; data[j + 2] = rgba[i + 2];
  }
  return { width, height, data };
}

/** An RGB image resized (and cropped) as `policy` says: "squash" to
 * `image_size` square, or "center_crop" (the shorter side to `resize_size`,
 * then the central `image_size` square). */
export function applyPolicy(image, policy) {
  const size = policy.image_size;
  if (policy.resize !== "center_crop") return resize(image, size, size, policy.interpolation);
  const short = policy.resize_size;
  const { width, height } = image;
  const resized = width <= height
    ? resize(image, short, Math.trunc(short * height / width), policy.interpolation)
    : resize(image, Math.trunc(short * width / height), short, policy.interpolation);
  const left = roundHalfEven((resized.width - size) / 2), top = roundHalfEven((resized.height - size) / 2);
  return crop(resized, left, top, size);
}

/** The model input: float32 NHWC `(1, size, size, 3)` values, 0..255 or,
 * for a model without its own rescaling, `x * scale + offset`. */
export function toInput(image, scale = null, offset = null) {
  const out = new Float32Array(image.data.length);
  const f = Math.fround;  // float32 arithmetic, as numpy's rescale
  for (let i = 0; i < image.data.length; i++) {
    const c = i % 3;
    out[i] = scale === null ? image.data[i] : f(f(image.data[i] * f(scale[c])) + f(offset[c]));
  }
  return out;
}
