// The flag list of every run: sortable by any column, filtered by text and
// kind, shown a page at a time so thousands of flags stay cheap. Flags held
// for the early verdict carry a status badge: pending, then cleared or
// confirmed once the verdict names them.

import {clear, el, fmt} from './dom.js';
import {number} from './api.js';

const PAGE = 200;
const COLUMNS = [
  {key: 'run', label: 'run'},
  {key: 'step', label: 'step', numeric: true, integer: true},
  {key: 'kind', label: 'kind'},
  {key: 'status', label: 'status'},
  {key: 'layer', label: 'layer'},
  {key: 'value', label: 'value', numeric: true},
  {key: 'threshold', label: 'threshold', numeric: true},
  {key: 'message', label: 'message'},
];

const STATUS = {
  pending: 'Pending: held until the early verdict confirms or clears it; ' +
      'shown and logged, not acted on.',
  cleared: 'Cleared: held until the early verdict, which found the run training ' +
      'and cleared this flag.',
  confirmed: 'Confirmed: held until the early verdict, which found the run ' +
      'likely to fail and confirmed this flag.',
};

/**
 * A flag's status: 'pending', 'cleared' or 'confirmed' (an early verdict
 * resolved it), '' for a flag that was never held.
 * @param {!Object} flag A flag of the `flags` route.
 * @return {string}
 */
export function flagStatus(flag) {
  if (!flag.pending) return '';
  return flag.resolved === 'cleared' || flag.resolved === 'confirmed' ?
    flag.resolved : 'pending';
}

/** The explanation of a status, for titles and tooltips. */
export function statusTitle(status) {
  return STATUS[status] || '';
}

/** The flag table. `onSelect(flag)` is called when a row is clicked. */
export class FlagTable {
  constructor(container, onSelect) {
    this.onSelect = onSelect;
    this.flags = [];
    this.sort = {key: 'run', ascending: true};
    this.limit = PAGE;
    this.selected = null;
    this.filter = el('input', {
      className: 'flag-filter',
      attrs: {type: 'search', placeholder: 'filter: run, kind, status, layer or message',
        'aria-label': 'filter flags'},
      on: {input: () => this.update(true)},
    });
    this.kind = el('select', {className: 'flag-kind', attrs: {'aria-label': 'flag kind'},
      on: {change: () => this.update(true)}});
    this.count = el('span', {className: 'flag-count'});
    this.head = el('tr');
    this.body = el('tbody');
    this.more = el('button', {text: 'Show more', on: {click: () => {
      this.limit += PAGE;
      this.update(false);
    }}});
    const table = el('table', {className: 'flags'}, [el('thead', {}, [this.head]), this.body]);
    this.scroller = el('div', {className: 'flag-table'}, [table]);
    container.append(el('div', {className: 'controls'}, [this.filter, this.kind, this.count]),
        this.scroller, this.more);
  }

  /** Replace the flags (each with its `run`). */
  setFlags(flags) {
    this.flags = flags.map((flag, index) => ({...flag, index, status: flagStatus(flag),
      value: number(flag.value), threshold: number(flag.threshold)}));
    clear(this.kind);
    this.kind.append(el('option', {text: 'all kinds', attrs: {value: ''}}));
    for (const kind of [...new Set(this.flags.map((f) => f.kind))].sort()) {
      this.kind.append(el('option', {text: kind, attrs: {value: kind}}));
    }
    this.update(true);
  }

  headers() {
    clear(this.head);
    for (const column of COLUMNS) {
      const active = this.sort.key === column.key;
      const arrow = active ? (this.sort.ascending ? ' \u25b2' : ' \u25bc') : '';
      this.head.append(el('th', {
        text: column.label + arrow,
        attrs: {'data-key': column.key, 'aria-sort':
            active ? (this.sort.ascending ? 'ascending' : 'descending') : 'none'},
        on: {click: () => {
          this.sort = {key: column.key,
            ascending: active ? !this.sort.ascending : true};
          this.update(false);
        }},
      }));
    }
  }

  /** The flags that pass the filters, sorted. */
  visible() {
    const text = this.filter.value.trim().toLowerCase();
    const kind = this.kind.value;
    const rows = this.flags.filter((f) => (!kind || f.kind === kind) && (!text ||
        [f.run, f.kind, f.status, f.layer, f.message].some((s) =>
          s.toLowerCase().includes(text))));
    const {key, ascending} = this.sort;
    const numeric = COLUMNS.find((c) => c.key === key).numeric;
    const sign = ascending ? 1 : -1;
    rows.sort((a, b) => {
      let order;
      if (numeric) {
        const x = Number.isNaN(a[key]) ? Infinity : a[key];
        const y = Number.isNaN(b[key]) ? Infinity : b[key];
        order = x === y ? 0 : (x < y ? -1 : 1);
      } else {
        order = String(a[key]).localeCompare(String(b[key]));
      }
      return sign * order || (a.step - b.step) || (a.index - b.index);
    });
    return rows;
  }

  update(resetPage) {
    if (resetPage) this.limit = PAGE;
    this.headers();
    const rows = this.visible();
    clear(this.body);
    if (!this.flags.length) {
      this.body.append(el('tr', {}, [el('td', {text: 'No flags in any run.',
        attrs: {colspan: COLUMNS.length}})]));
    }
    for (const flag of rows.slice(0, this.limit)) {
      const tr = el('tr', {className: flag === this.selected ? 'selected' : '',
        on: {click: () => this.choose(flag, tr)}});
      tr.dataset.index = String(flag.index);
      if (flag.status) tr.dataset.status = flag.status;
      for (const column of COLUMNS) {
        const value = flag[column.key];
        if (column.key === 'status') {
          tr.append(el('td', {className: 'col-status'}, value ? [el('span', {
            className: `badge ${value}`, text: value, title: statusTitle(value)})] : []));
          continue;
        }
        const text = column.integer ? String(value) : (column.numeric ? fmt(value) : value);
        tr.append(el('td', {text,
          className: `col-${column.key}`}));
      }
      this.body.append(tr);
    }
    this.count.textContent = `${rows.length} of ${this.flags.length} flags` +
        (rows.length > this.limit ? `, first ${this.limit} shown` : '');
    this.more.hidden = rows.length <= this.limit;
  }

  choose(flag, tr) {
    this.selected = flag;
    for (const row of this.body.querySelectorAll('tr.selected')) row.classList.remove('selected');
    tr.classList.add('selected');
    this.onSelect(flag);
  }
}

/** A verdict's risk or threshold with two decimals; NaN (null) as 'unknown'. */
function fixed(value) {
  const x = number(value);
  return Number.isFinite(x) ? x.toFixed(2) : (Number.isNaN(x) ? 'unknown' : fmt(x));
}

/** The line of one run's early verdict: its head, then its summary. */
function verdictLine(run, verdict) {
  const word = verdict.failing ? 'likely to fail' : 'training';
  const head = el('span', {className: 'verdict-head',
    text: `Early verdict at step ${verdict.step}: ${word} (risk ${fixed(verdict.risk)})`,
    title: `threshold ${fixed(verdict.threshold)}; watched from step ${verdict.start}`});
  let text = ` ${verdict.summary}`;
  if (verdict.confirmed.length) text += ` Confirmed the pending ${verdict.confirmed.join(', ')}.`;
  if (verdict.cleared.length) text += ` Cleared the pending ${verdict.cleared.join(', ')}.`;
  return el('li', {className: verdict.failing ? 'failing' : 'training'},
      [`${run.run}: `, head, text]);
}

/**
 * One line per run about its early verdict: the latest one, healthy or
 * failing, with its summary; "no early verdict yet" for a run whose flags
 * still wait for one; nothing for a run without either.
 * @param {!HTMLElement} list A `ul`, emptied and hidden when no run has a line.
 * @param {!Array<!Object>} runs Entries of the `runs` route.
 */
export function drawVerdicts(list, runs) {
  clear(list);
  for (const run of runs) {
    let item = null;
    if (run.verdict) {
      item = verdictLine(run, run.verdict);
    } else if (run.num_pending) {
      const flags = `${run.num_pending} pending flag${run.num_pending === 1 ? '' : 's'}`;
      item = el('li', {className: 'waiting', title: statusTitle('pending'),
        text: `${run.run}: no early verdict yet (${flags})`});
    }
    if (!item) continue;
    item.dataset.run = run.run;
    list.append(item);
  }
  list.hidden = !list.children.length;
}
