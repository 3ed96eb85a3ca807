// The depth profile (signal propagation plot) of one run at one step: each
// statistic against depth on a log axis, the theory's prediction as a dashed
// line with its finite-width band, normalization layers and merges marked.

import {number} from './api.js';
import {el, fitText, fmt, sizeCanvas} from './dom.js';
import {describe, KIND_COLORS} from './heatmap.js';

/** The measured series, their labels and colours. */
export const SERIES = [
  {stat: 'activation_variance', label: 'activation variance', color: '#1565c0'},
  {stat: 'activation_gradient_rms', label: 'activation gradient RMS', color: '#ef6c00'},
  {stat: 'weight_variance', label: 'weight variance', color: '#2e7d32'},
  {stat: 'gradient_norm', label: 'gradient norm', color: '#8e24aa'},
];
export const PREDICTION = {
  stat: 'predicted_activation_variance',
  spread: 'predicted_log_spread',
  label: 'predicted activation variance (band: \u00b13 spread)',
  color: '#1565c0',
};
const KIND_GLYPHS = {input: '\u25a0', norm: '\u25b2', merge: '\u25c6', op: '\u25cf'};
const FONT = '10px system-ui, sans-serif';
const LEFT = 58;
const RIGHT = 12;
const TOP = 26;
const PLOT_HEIGHT = 260;
const LABELS = 110;

/** One run's depth profile. */
export class ProfilePanel {
  constructor(container, run, tooltip) {
    this.run = run;
    this.tooltip = tooltip;
    this.title = el('div', {className: 'panel-title', text: run});
    this.canvas = el('canvas', {className: 'profile', attrs: {role: 'img'}});
    this.caption = el('div', {className: 'caption'});
    this.node = el('div', {className: 'panel', attrs: {'data-run': run}},
        [this.title, this.canvas, this.caption]);
    container.append(this.node);
    this.data = null;
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
  }

  message(text) {
    this.data = null;
    this.canvas.hidden = true;
    this.caption.textContent = text;
  }

  /**
   * Draw a profile.
   * @param {!Object} data The `profile` route's answer.
   * @param {!Map<string, !Object>} facts Node -> its facts (kind, inputs, ...).
   * @param {!Set<string>} enabled Statistics to draw (and 'prediction').
   */
  draw(data, facts, enabled) {
    this.data = data;
    this.facts = facts;
    this.canvas.hidden = false;
    const layers = data.layers;
    const n = layers.length;
    const shown = SERIES.filter((s) => enabled.has(s.stat) && data.series[s.stat]);
    const values = Object.fromEntries(Object.entries(data.series).map(
        ([stat, s]) => [stat, s.values.map(number)]));
    const band = this.band(values, enabled);
    const steps = shown.map((s) => data.series[s.stat].step).filter((s) => s !== null);
    const used = steps.length ? steps[0] : data.step;
    this.title.textContent = `${this.run} \u2014 step ${used}`;
    this.node.dataset.step = String(used);

    let lo = Infinity;
    let hi = -Infinity;
    const cover = (v) => {
      if (Number.isFinite(v) && v > 0) {
        lo = Math.min(lo, Math.log10(v));
        hi = Math.max(hi, Math.log10(v));
      }
    };
    for (const s of shown) values[s.stat].forEach(cover);
    if (band) band.forEach(([p, low, high]) => [p, low, high].forEach(cover));
    if (!Number.isFinite(lo)) {
      lo = -1;
      hi = 1;
    }
    const pad = Math.max(0.2, (hi - lo) * 0.05);
    lo -= pad;
    hi += pad;

    const width = Math.max(320, this.node.clientWidth - 2);
    const ctx = sizeCanvas(this.canvas, width, TOP + PLOT_HEIGHT + LABELS);
    const plotWidth = width - LEFT - RIGHT;
    this.geometry = {plotWidth, n};
    const x = (i) => LEFT + ((i + 0.5) / Math.max(1, n)) * plotWidth;
    const y = (v) => TOP + (1 - (Math.log10(v) - lo) / (hi - lo)) * PLOT_HEIGHT;
    const bottom = TOP + PLOT_HEIGHT;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, bottom + LABELS);
    this.drawGrid(ctx, lo, hi, y, plotWidth);
    this.drawKinds(ctx, layers, x, bottom);

    if (band) {
      ctx.fillStyle = 'rgba(21, 101, 192, 0.15)';
      ctx.beginPath();
      let started = false;
      const valid = band.map((b, i) => [i, b]).filter(([, b]) => b[1] > 0 && b[2] > 0);
      for (const [i, b] of valid) {
        ctx[started ? 'lineTo' : 'moveTo'](x(i), y(b[2]));
        started = true;
      }
      for (const [i, b] of valid.reverse()) ctx.lineTo(x(i), y(b[1]));
      ctx.closePath();
      ctx.fill();
      this.line(ctx, band.map((b) => b[0]), x, y, PREDICTION.color, [6, 4], false);
    }
    const notes = [];
    ctx.font = FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    for (const s of shown) {
      const v = values[s.stat];
      this.line(ctx, v, x, y, s.color, [], true);
      const finite = v.filter((u) => !Number.isNaN(u));
      if (finite.length && finite.every((u) => u === 0)) notes.push(`${s.label}: all zero`);
      else if (finite.some((u) => u === 0)) notes.push(`${s.label}: zeros drawn as \u25bc`);
      for (let i = 0; i < n; i++) {
        if (v[i] === 0) {
          ctx.fillStyle = s.color;
          ctx.fillText('\u25bc', x(i), bottom - 6);
        }
      }
    }
    const drawn = shown.some((s) => values[s.stat].some((v) => Number.isFinite(v) && v > 0));
    if (!drawn && !band) {
      // Nothing a log axis can show: say why in the middle of the panel.
      const allZero = shown.some((s) => notes.includes(`${s.label}: all zero`));
      ctx.font = '16px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillStyle = '#b71c1c';
      ctx.fillText(allZero ? 'all zero' : 'no values to draw', LEFT + plotWidth / 2,
          TOP + PLOT_HEIGHT / 2);
    }
    this.drawNames(ctx, layers, x, bottom);
    const measured = shown.length ? shown.map((s) => s.label).join(', ') : 'nothing';
    this.caption.textContent = `${n} layers; drawn: ${measured}` +
        (band ? ', prediction' : '') + (notes.length ? `. ${notes.join('; ')}` : '');
    this.notes = notes;
  }

  /** [prediction, low, high] per node when the prediction is present. */
  band(values, enabled) {
    const predicted = values[PREDICTION.stat];
    if (!predicted || !enabled.has('prediction')) return null;
    const spread = values[PREDICTION.spread];
    return predicted.map((p, i) => {
      const s = spread && Number.isFinite(spread[i]) ? spread[i] : 0;
      return [p, p * Math.exp(-3 * s), p * Math.exp(3 * s)];
    });
  }

  line(ctx, values, x, y, color, dash, points) {
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1.8;
    ctx.setLineDash(dash);
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (Number.isFinite(v) && v > 0) {
        ctx[drawing ? 'lineTo' : 'moveTo'](x(i), y(v));
        drawing = true;
      } else {
        drawing = false;
      }
    });
    ctx.stroke();
    ctx.setLineDash([]);
    if (points && values.length <= 200) {
      values.forEach((v, i) => {
        if (Number.isFinite(v) && v > 0) {
          ctx.beginPath();
          ctx.arc(x(i), y(v), 2.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      });
    }
  }

  drawGrid(ctx, lo, hi, y, plotWidth) {
    ctx.font = FONT;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const step = Math.max(1, Math.ceil((Math.floor(hi) - Math.ceil(lo) + 1) / 7));
    for (let e = Math.ceil(lo); e <= hi; e += step) {
      const py = Math.round(y(10 ** e)) + 0.5;
      ctx.strokeStyle = '#eeeeee';
      ctx.beginPath();
      ctx.moveTo(LEFT, py);
      ctx.lineTo(LEFT + plotWidth, py);
      ctx.stroke();
      ctx.fillStyle = '#424242';
      ctx.fillText(`1e${e}`, LEFT - 4, py);
    }
    ctx.strokeStyle = '#9e9e9e';
    ctx.strokeRect(LEFT + 0.5, TOP + 0.5, plotWidth, PLOT_HEIGHT);
    ctx.save();
    ctx.translate(12, TOP + PLOT_HEIGHT / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText('log scale', 0, 0);
    ctx.restore();
  }

  /** Normalization layers and merges: a glyph under the axis, a faint line. */
  drawKinds(ctx, layers, x, bottom) {
    ctx.font = FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const index = new Map(layers.map((name, i) => [name, i]));
    layers.forEach((name, i) => {
      const facts = this.facts.get(name) || {};
      const kind = facts.kind;
      if (kind === 'merge') this.drawSkips(ctx, facts.inputs || [], index, i, x, bottom);
      if (!KIND_COLORS[kind]) return;
      ctx.fillStyle = KIND_COLORS[kind];
      ctx.fillText(KIND_GLYPHS[kind], x(i), bottom + 2);
      if (kind === 'norm' || kind === 'merge') {
        ctx.strokeStyle = kind === 'norm' ? 'rgba(46,125,50,0.25)' : 'rgba(123,31,162,0.25)';
        ctx.beginPath();
        ctx.moveTo(Math.round(x(i)) + 0.5, TOP);
        ctx.lineTo(Math.round(x(i)) + 0.5, bottom);
        ctx.stroke();
      }
    });
  }

  /**
   * A merge's skip connections: an arc above the axis from each producer that
   * is not the layer just before it.
   */
  drawSkips(ctx, inputs, index, to, x, bottom) {
    ctx.strokeStyle = 'rgba(123,31,162,0.55)';
    ctx.lineWidth = 1.2;
    for (const name of inputs) {
      const from = index.get(name);
      if (from === undefined || from >= to - 1) continue;
      const lift = Math.min(60, 10 + 6 * (to - from));
      ctx.beginPath();
      ctx.moveTo(x(from), bottom);
      ctx.quadraticCurveTo((x(from) + x(to)) / 2, bottom - lift, x(to), bottom);
      ctx.stroke();
    }
  }

  /** Layer names under the axis, rotated; every k-th when they would collide. */
  drawNames(ctx, layers, x, bottom) {
    const n = layers.length;
    const spacing = this.geometry.plotWidth / Math.max(1, n);
    const every = Math.max(1, Math.ceil(12 / spacing));
    ctx.font = FONT;
    ctx.fillStyle = '#212121';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const angle = -Math.PI / 4;
    const room = (LABELS - 18) / Math.sin(Math.PI / 4);
    for (let i = 0; i < n; i += every) {
      ctx.save();
      ctx.translate(x(i), bottom + 16);
      ctx.rotate(angle);
      ctx.fillText(fitText(ctx, layers[i], room), 0, 0);
      ctx.restore();
    }
  }

  hover(event) {
    if (!this.data || !this.data.layers.length) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left - LEFT;
    const {plotWidth, n} = this.geometry;
    const i = Math.floor((px / plotWidth) * n);
    if (i < 0 || i >= n) {
      this.tooltip.hide();
      return;
    }
    const name = this.data.layers[i];
    const lines = [this.run, `layer ${i}: ${name}`, ...describe(this.facts.get(name))];
    for (const [stat, s] of Object.entries(this.data.series)) {
      lines.push(`${stat} = ${fmt(number(s.values[i]))} (step ${s.step})`);
    }
    this.tooltip.show(lines, event.clientX, event.clientY);
  }
}
