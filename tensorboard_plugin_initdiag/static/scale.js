// Colour scales of the heatmaps: log10 (or linear for fractions) onto viridis.

// Viridis at 11 evenly spaced points; colours in between are interpolated.
const VIRIDIS = [
  [68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142],
  [33, 145, 140], [34, 168, 132], [68, 190, 112], [122, 209, 81],
  [189, 223, 38], [253, 231, 37],
];
const LUT_SIZE = 256;

/** Special cell colours, as CSS and as packed RGBA. */
export const COLORS = {
  gap: '#e6e6e6',
  zero: '#000000',
  nonfinite: '#e91e63',
  flag: '#ff1744',
  highlight: '#00b0ff',
};

/** Pack r, g, b into a little-endian RGBA uint32 (ImageData byte order). */
export function pack(r, g, b) {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

function hexToPacked(hex) {
  const n = parseInt(hex.slice(1), 16);
  return pack((n >> 16) & 255, (n >> 8) & 255, n & 255);
}

export const PACKED = Object.fromEntries(
    Object.entries(COLORS).map(([name, hex]) => [name, hexToPacked(hex)]));

/** The colour at t in [0, 1] as [r, g, b]. */
export function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + f * (b[k] - a[k])));
}

const LUT = Uint32Array.from({length: LUT_SIZE}, (_, i) =>
  pack(...viridis(i / (LUT_SIZE - 1))));

/**
 * A colour scale fitted to some values.
 *
 * Fractions (statistics named *_fraction, all in [0, 1]) use a linear scale
 * from 0 to 1; everything else uses log10 of the magnitude, with exact zeros
 * in their own colour.
 */
export class ColorScale {
  /**
   * @param {string} stat The statistic's name.
   * @param {!Array<!Float32Array>} arrays The values the scale must cover.
   */
  constructor(stat, arrays) {
    let lo = Infinity;
    let hi = -Infinity;
    let negative = false;
    this.linear = stat.endsWith('_fraction');
    for (const values of arrays) {
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (!Number.isFinite(v)) continue;
        if (v < 0) negative = true;
        if (this.linear) {
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        } else if (v !== 0) {
          const m = Math.log10(Math.abs(v));
          if (m < lo) lo = m;
          if (m > hi) hi = m;
        }
      }
    }
    if (this.linear) {
      lo = Math.min(0, lo);
      hi = Math.max(1, hi);
    }
    if (!Number.isFinite(lo)) {
      lo = 0;
      hi = 1;
    } else if (hi - lo < 1e-9) {
      lo -= 0.5;
      hi += 0.5;
    }
    this.lo = lo;
    this.hi = hi;
    this.magnitude = negative && !this.linear;
  }

  /** The packed colour of one value. */
  packed(v) {
    if (Number.isNaN(v)) return PACKED.gap;
    if (!Number.isFinite(v)) return PACKED.nonfinite;
    let t;
    if (this.linear) {
      t = (v - this.lo) / (this.hi - this.lo);
    } else {
      if (v === 0) return PACKED.zero;
      t = (Math.log10(Math.abs(v)) - this.lo) / (this.hi - this.lo);
    }
    const i = Math.round(Math.min(1, Math.max(0, t)) * (LUT_SIZE - 1));
    return LUT[i];
  }

  /** Packed colours of every value. */
  packAll(values) {
    const out = new Uint32Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = this.packed(values[i]);
    return out;
  }

  /** Tick values (data units) for the legend: at most `count`. */
  ticks(count = 5) {
    if (this.linear) return [this.lo, (this.lo + this.hi) / 2, this.hi];
    const first = Math.ceil(this.lo);
    const last = Math.floor(this.hi);
    const step = Math.max(1, Math.ceil((last - first + 1) / count));
    const ticks = [];
    for (let e = first; e <= last; e += step) ticks.push(10 ** e);
    if (ticks.length < 2) return [10 ** this.lo, ...ticks, 10 ** this.hi];
    return ticks;
  }

  /** Position of a tick in [0, 1] along the legend. */
  position(value) {
    const x = this.linear ? value : Math.log10(Math.abs(value));
    return (x - this.lo) / (this.hi - this.lo);
  }

  /** What the colours mean, in words. */
  describe() {
    if (this.linear) return 'linear scale';
    return this.magnitude ? 'log scale of |value|' : 'log scale';
  }
}

/** A short label for a legend tick: 1e-3, 0.01, 1, 100, 1e4. */
export function tickLabel(value) {
  if (value === 0) return '0';
  const e = Math.log10(Math.abs(value));
  if (Number.isInteger(Math.round(e * 1e9) / 1e9) && (e < -2 || e > 3)) {
    return `${value < 0 ? '-' : ''}1e${Math.round(e)}`;
  }
  return String(Number(value.toPrecision(3)));
}
