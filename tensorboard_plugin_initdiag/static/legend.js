// The heatmaps' legend: the colour bar with its ticks, and the special colours.

import {clear, el, sizeCanvas} from './dom.js';
import {KIND_COLORS} from './heatmap.js';
import {COLORS, tickLabel, viridis} from './scale.js';

const KIND_NAMES = {
  input: 'model input',
  norm: 'normalization',
  merge: 'merge',
  preprocess: 'preprocessing',
  reduce: 'pooling',
  op: 'op',
};

/**
 * Fill `legend` for one statistic.
 * @param {!HTMLElement} legend
 * @param {?ColorScale} scale The shared scale, or null when each run has one.
 * @param {string} stat
 */
export function drawLegend(legend, scale, stat) {
  clear(legend);
  if (scale) {
    const bar = el('canvas', {className: 'legend-bar'});
    const width = 260;
    const ctx = sizeCanvas(bar, width, 30);
    for (let x = 0; x < width; x++) {
      ctx.fillStyle = `rgb(${viridis(x / (width - 1)).join(',')})`;
      ctx.fillRect(x, 0, 1, 14);
    }
    ctx.fillStyle = '#424242';
    ctx.font = '10px system-ui, sans-serif';
    ctx.textBaseline = 'top';
    for (const tick of scale.ticks()) {
      const x = Math.min(width - 1, Math.max(0, scale.position(tick) * width));
      ctx.fillRect(Math.round(x), 14, 1, 3);
      ctx.textAlign = x < 15 ? 'left' : (x > width - 15 ? 'right' : 'center');
      ctx.fillText(tickLabel(tick), x, 18);
    }
    legend.append(el('span', {text: `${stat} (${scale.describe()})`}), bar);
  } else {
    legend.append(el('span', {text: `${stat}: each run has its own colour scale`}));
  }
  const swatch = (color, text, outline = false) => {
    const box = el('span', {className: outline ? 'swatch outline' : 'swatch'});
    box.style[outline ? 'borderColor' : 'background'] = color;
    return el('span', {className: 'key'}, [box, text]);
  };
  legend.append(swatch(COLORS.zero, '0'), swatch(COLORS.nonfinite, 'inf / NaN'),
      swatch(COLORS.gap, 'no value'), swatch(COLORS.flag, 'flag', true),
      swatch(COLORS.highlight, 'selected flag', true));
  for (const [kind, color] of Object.entries(KIND_COLORS)) {
    legend.append(swatch(color, KIND_NAMES[kind] || kind));
  }
}
