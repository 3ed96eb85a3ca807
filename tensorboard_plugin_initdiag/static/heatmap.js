// One run's layer x step heatmap, drawn on a canvas: one pixel column per
// screen column (not one DOM node per cell), so 150 x 1000 cells stay cheap.

import {clear, el, fitText, fmt, sizeCanvas} from './dom.js';
import {flagStatus} from './flags.js';
import {COLORS} from './scale.js';

const FONT = '11px system-ui, sans-serif';
const MAX_LABEL = 190;
const TOP = 6;
const BOTTOM = 34;
const RIGHT = 10;
const MAX_PLOT_HEIGHT = 520;
const KIND_MARK = 10;

/** Colours of the node-kind marks next to the row labels. */
export const KIND_COLORS = {
  input: '#757575',
  norm: '#2e7d32',
  merge: '#7b1fa2',
  preprocess: '#0277bd',
  reduce: '#5d4037',
  op: '#ef6c00',
};

/** Index of the last element of sorted `steps` that is <= `step` (or 0). */
export function columnOf(steps, step) {
  let low = 0;
  let high = steps.length - 1;
  if (high < 0 || step < steps[0]) return 0;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (steps[mid] <= step) low = mid;
    else high = mid - 1;
  }
  return low;
}

/**
 * The heatmap of one run and one statistic.
 *
 * The horizontal axis is linear in steps: a column spans from its step to the
 * next column's step, so irregular diagnosis schedules keep their shape.
 */
export class HeatmapPanel {
  /**
   * @param {!HTMLElement} container Where the panel goes.
   * @param {string} run The run's name.
   * @param {!Tooltip} tooltip The page's tooltip.
   */
  constructor(container, run, tooltip) {
    this.run = run;
    this.tooltip = tooltip;
    this.title = el('div', {className: 'panel-title', text: run});
    this.notes = el('div', {className: 'notes'});
    this.canvas = el('canvas', {className: 'heatmap', attrs: {role: 'img'}});
    this.caption = el('div', {className: 'caption'});
    this.selection = el('div', {className: 'selection'});
    this.node = el('div', {className: 'panel', attrs: {'data-run': run}}, [
      this.title, this.notes, this.canvas, this.caption, this.selection,
    ]);
    container.append(this.node);
    this.matrix = null;
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
  }

  /** Show a message instead of a heatmap. */
  message(text) {
    this.matrix = null;
    this.canvas.hidden = true;
    this.caption.textContent = text;
  }

  /** Show the run's notes (sampling, truncation, older format). */
  setNotes(notes) {
    clear(this.notes);
    for (const note of notes) this.notes.append(el('div', {text: note}));
  }

  /**
   * Draw the matrix.
   * @param {!Object} matrix {stat, rows, steps, values: Float32Array, sampled}.
   * @param {!ColorScale} scale
   * @param {!Map<string, !Array<!Object>>} flags "layer\u0000step" -> flags.
   * @param {!Map<string, !Object>} facts Node -> its facts (kind, inputs, ...).
   * @param {?Object} highlight {layer, step} to mark, or null.
   */
  draw(matrix, scale, flags, facts, highlight) {
    this.matrix = matrix;
    this.scale = scale;
    this.flags = flags;
    this.facts = facts;
    this.canvas.hidden = false;
    const {rows, steps} = matrix;
    const width = Math.max(320, this.node.clientWidth - 2);
    const measure = this.canvas.getContext('2d');
    measure.font = FONT;
    let labelWidth = 40;
    for (const row of rows) {
      labelWidth = Math.max(labelWidth, measure.measureText(row).width);
      if (labelWidth >= MAX_LABEL) break;
    }
    const left = Math.min(MAX_LABEL, Math.ceil(labelWidth)) + KIND_MARK + 8;
    const rowHeight = rows.length ?
      Math.max(2, Math.min(18, Math.floor(MAX_PLOT_HEIGHT / rows.length))) : 18;
    const plotWidth = Math.max(40, width - left - RIGHT);
    const plotHeight = rowHeight * rows.length;
    const ctx = sizeCanvas(this.canvas, width, TOP + plotHeight + BOTTOM);
    this.geometry = {left, top: TOP, rowHeight, plotWidth, plotHeight};
    Object.assign(this.canvas.dataset, {
      plotLeft: left, plotTop: TOP, rowHeight, plotWidth, rows: rows.length,
      columns: steps.length,
    });
    const last = steps.length > 1 ? steps[steps.length - 1] - steps[steps.length - 2] : 1;
    this.first = steps.length ? steps[0] : 0;
    this.end = steps.length ? steps[steps.length - 1] + Math.max(1, last) : 1;

    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, TOP + plotHeight + BOTTOM);
    this.drawCells(ctx, scale);
    this.drawLabels(ctx);
    this.drawAxis(ctx);
    const flagged = this.drawFlags(ctx, highlight);
    this.canvas.setAttribute('aria-label',
        `${matrix.stat} of ${this.run}: ${rows.length} layers x ${steps.length} steps`);
    let caption = `${rows.length} layers \u00d7 ${steps.length} steps`;
    const flagText = `, ${flagged} flagged cell${flagged === 1 ? '' : 's'}`;
    if (steps.length < matrix.columns) {
      caption += ` shown of ${matrix.columns}, evenly spaced (one per pixel ` +
          'column; hover shows each column\'s step)';
    }
    if (matrix.sampled) {
      caption += `. Some layers have ${matrix.cap} points, TensorBoard's limit per ` +
          'tag: if more were written, it kept a random sample (other steps are grey; ' +
          '--samples_per_plugin=scalars=0 keeps all)';
    }
    this.caption.textContent = caption + flagText;
  }

  /** A node's kind ('layer' when unknown). */
  kindOf(name) {
    const facts = this.facts.get(name);
    return facts ? facts.kind : 'layer';
  }

  /** x (CSS px) of a step. */
  x(step) {
    const {left, plotWidth} = this.geometry;
    return left + ((step - this.first) / (this.end - this.first)) * plotWidth;
  }

  drawCells(ctx, scale) {
    const {rows, steps, values} = this.matrix;
    const {left, top, rowHeight, plotWidth, plotHeight} = this.geometry;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(plotWidth * ratio));
    const height = Math.max(1, Math.round(plotHeight * ratio));
    if (!rows.length || !steps.length) return;
    const colors = scale.packAll(values);
    // The column under each device-pixel column's centre.
    const columnAt = new Int32Array(width);
    let j = 0;
    for (let px = 0; px < width; px++) {
      const step = this.first + ((px + 0.5) / width) * (this.end - this.first);
      while (j + 1 < steps.length && steps[j + 1] <= step) j++;
      columnAt[px] = j;
    }
    const image = ctx.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    const cols = steps.length;
    const gap = rowHeight >= 6 ? 1 : 0;
    for (let r = 0; r < rows.length; r++) {
      const y0 = Math.round(r * rowHeight * ratio);
      const y1 = Math.round(((r + 1) * rowHeight - gap) * ratio);
      const base = r * cols;
      const line = y0 * width;
      for (let px = 0; px < width; px++) pixels[line + px] = colors[base + columnAt[px]];
      for (let y = y0 + 1; y < y1; y++) pixels.copyWithin(y * width, line, line + width);
      for (let y = y1; y < Math.round((r + 1) * rowHeight * ratio); y++) {
        pixels.fill(0xffffffff, y * width, (y + 1) * width);
      }
    }
    ctx.putImageData(image, Math.round(left * ratio), Math.round(top * ratio));
  }

  drawLabels(ctx) {
    const {rows} = this.matrix;
    const {left, top, rowHeight} = this.geometry;
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    const every = Math.max(1, Math.ceil(12 / rowHeight));
    for (let r = 0; r < rows.length; r++) {
      const y = top + (r + 0.5) * rowHeight;
      const kind = this.kindOf(rows[r]);
      if (KIND_COLORS[kind]) {
        ctx.fillStyle = KIND_COLORS[kind];
        ctx.fillRect(left - KIND_MARK - 2, y - Math.min(4, rowHeight / 2),
            KIND_MARK - 3, Math.max(2, Math.min(8, rowHeight)));
      }
      if (r % every === 0) {
        ctx.fillStyle = '#212121';
        ctx.fillText(fitText(ctx, rows[r], left - KIND_MARK - 8), left - KIND_MARK - 6, y);
      }
    }
  }

  drawAxis(ctx) {
    const {left, top, plotWidth, plotHeight} = this.geometry;
    const y = top + plotHeight;
    ctx.strokeStyle = '#9e9e9e';
    ctx.beginPath();
    ctx.moveTo(left, y + 0.5);
    ctx.lineTo(left + plotWidth, y + 0.5);
    ctx.stroke();
    ctx.fillStyle = '#424242';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const step of niceTicks(this.first, this.end, Math.max(2, plotWidth / 90))) {
      const x = this.x(step);
      ctx.fillRect(Math.round(x), y, 1, 4);
      ctx.fillText(String(step), x, y + 5);
    }
    ctx.textAlign = 'right';
    ctx.fillText('step', left + plotWidth, y + 19);
  }

  /** The cell (row, column) that holds a flag's layer and step, or null. */
  cellOf(layer, step) {
    const row = this.rowOf.get(layer);
    const {steps} = this.matrix;
    if (row === undefined || !steps.length) return null;
    return {row, column: columnOf(steps, step)};
  }

  /** The rectangle (CSS px) of a cell, at least 4 px wide and high. */
  box(cell) {
    const {steps} = this.matrix;
    const {top, rowHeight} = this.geometry;
    const j = cell.column;
    const x0 = this.x(steps[j]);
    const x1 = j + 1 < steps.length ? this.x(steps[j + 1]) : this.x(this.end);
    const w = Math.max(4, x1 - x0);
    const h = Math.max(4, rowHeight);
    const y0 = top + cell.row * rowHeight;
    return [x0 + (x1 - x0) / 2 - w / 2, y0 + rowHeight / 2 - h / 2, w, h];
  }

  /** Outline flagged cells (and the highlighted one); returns how many. */
  drawFlags(ctx, highlight) {
    this.rowOf = new Map(this.matrix.rows.map((name, i) => [name, i]));
    this.cellFlags = new Map();
    for (const flags of this.flags.values()) {
      for (const flag of flags) {
        const cell = this.cellOf(flag.layer, flag.step);
        if (!cell) continue;
        const key = `${cell.row},${cell.column}`;
        if (!this.cellFlags.has(key)) this.cellFlags.set(key, {cell, flags: []});
        this.cellFlags.get(key).flags.push(flag);
      }
    }
    ctx.lineWidth = 2;
    ctx.strokeStyle = COLORS.flag;
    for (const {cell} of this.cellFlags.values()) {
      const b = this.box(cell);
      ctx.strokeRect(b[0] + 1, b[1] + 1, b[2] - 2, b[3] - 2);
    }
    this.highlighted = null;
    const cell = highlight && this.cellOf(highlight.layer, highlight.step);
    if (cell) {
      const b = this.box(cell);
      ctx.lineWidth = 3;
      ctx.strokeStyle = COLORS.highlight;
      ctx.strokeRect(b[0] - 3, b[1] - 3, b[2] + 6, b[3] + 6);
      this.highlighted = b;
    }
    return this.cellFlags.size;
  }

  /** The (row, column) under a mouse event, or null. */
  cellAt(event) {
    if (!this.matrix || !this.matrix.rows.length) return null;
    const rect = this.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const {left, top, rowHeight, plotWidth, plotHeight} = this.geometry;
    if (x < left || x >= left + plotWidth || y < top || y >= top + plotHeight) return null;
    const step = this.first + ((x - left) / plotWidth) * (this.end - this.first);
    return {row: Math.floor((y - top) / rowHeight), column: columnOf(this.matrix.steps, step)};
  }

  hover(event) {
    const cell = this.cellAt(event);
    if (!cell) {
      this.tooltip.hide();
      return;
    }
    const {rows, steps, values, stat} = this.matrix;
    const layer = rows[cell.row];
    const step = steps[cell.column];
    const value = values[cell.row * steps.length + cell.column];
    const lines = [this.run, `layer: ${layer}`, ...describe(this.facts.get(layer))];
    lines.push(`step: ${step}`);
    lines.push(Number.isNaN(value) ? `${stat}: no value at this step` : `${stat} = ${fmt(value)}`);
    const flagged = this.cellFlags.get(`${cell.row},${cell.column}`);
    for (const flag of flagged ? flagged.flags : []) {
      const at = flag.step === step ? '' : ` (step ${flag.step})`;
      const status = flagStatus(flag);
      lines.push(`\u2691 ${flag.kind}${at}${status ? ` (${status})` : ''}: ${flag.message}`);
    }
    this.tooltip.show(lines, event.clientX, event.clientY);
  }

  /** Say which flag is selected, below the heatmap. */
  select(flag, found) {
    if (!flag) {
      this.selection.textContent = '';
      return;
    }
    let text = `Selected: ${flag.kind} at ${flag.layer}, step ${flag.step}: ${flag.message}`;
    if (!found) text += ` (no cell for this layer in the ${this.matrix ? this.matrix.stat : ''} heatmap)`;
    this.selection.textContent = text;
  }
}

/** About `count` round step values between `first` and `end`. */
export function niceTicks(first, end, count) {
  const span = Math.max(1, end - first);
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw));
  const ticks = [];
  for (let t = Math.ceil(first / step) * step; t < end; t += step) ticks.push(Math.round(t));
  return ticks.length ? ticks : [first];
}

/** Tooltip lines for a node's facts: its kind, class and producers. */
export function describe(facts) {
  if (!facts) return [];
  const lines = [];
  const what = [facts.kind !== 'layer' ? facts.kind : '', facts.class_name || '',
    facts.activation || ''].filter(Boolean);
  if (what.length) lines.push(what.join(' \u00b7 '));
  if (facts.inputs && facts.inputs.length) lines.push(`inputs: ${facts.inputs.join(', ')}`);
  return lines;
}
