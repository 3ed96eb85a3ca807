// DOM helpers. Text goes in through textContent only: names and messages from
// the logs are data, never markup.

/**
 * Create an element.
 * @param {string} tag Element name.
 * @param {!Object=} props `className`, `text`, `title`, `attrs` (attributes),
 *     `on` (event name -> listener).
 * @param {!Array<Node|string>=} children Nodes, or strings added as text.
 * @return {!HTMLElement}
 */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = String(props.text);
  if (props.title !== undefined) node.title = String(props.title);
  for (const [name, value] of Object.entries(props.attrs || {})) {
    node.setAttribute(name, String(value));
  }
  for (const [name, listener] of Object.entries(props.on || {})) {
    node.addEventListener(name, listener);
  }
  for (const child of children) {
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Remove every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/**
 * Format a number compactly: 4 significant digits, exponent when far from 1.
 * @param {number|null} value
 * @return {string}
 */
export function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '-';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e4) return String(Number(value.toPrecision(4)));
  return value.toExponential(2);
}

/**
 * Shorten `text` with an ellipsis until it fits `width` pixels in `ctx`.
 * @param {!CanvasRenderingContext2D} ctx
 * @param {string} text
 * @param {number} width
 * @return {string}
 */
export function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let low = 0;
  let high = text.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (ctx.measureText(text.slice(0, mid) + '\u2026').width <= width) low = mid;
    else high = mid - 1;
  }
  return text.slice(0, low) + '\u2026';
}

/**
 * Size a canvas to `width` x `height` CSS pixels at the device pixel ratio.
 * @return {!CanvasRenderingContext2D} A context drawing in CSS pixels.
 */
export function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

/** The one tooltip of the page: shows `lines` near (x, y) in the viewport. */
export class Tooltip {
  constructor() {
    this.node = el('div', {className: 'tooltip', attrs: {role: 'tooltip'}});
    this.node.hidden = true;
    document.body.append(this.node);
  }

  show(lines, x, y) {
    this.node.textContent = lines.join('\n');
    this.node.hidden = false;
    const box = this.node.getBoundingClientRect();
    const left = Math.min(x + 14, window.innerWidth - box.width - 4);
    const top = y + 14 + box.height > window.innerHeight ? y - box.height - 8 : y + 14;
    this.node.style.left = `${Math.max(0, left) + window.scrollX}px`;
    this.node.style.top = `${Math.max(0, top) + window.scrollY}px`;
  }

  hide() {
    this.node.hidden = true;
  }
}
