// The initdiag dashboard: TensorBoard loads this module in the plugin's iframe
// and calls render(). No framework, no build step, no network beyond the
// plugin's own routes.

import {decodeFloat32, getJson} from './api.js';
import {clear, el, Tooltip} from './dom.js';
import {drawVerdicts, FlagTable} from './flags.js';
import {HeatmapPanel} from './heatmap.js';
import {drawLegend} from './legend.js';
import {PREDICTION, ProfilePanel, SERIES} from './profile.js';
import {ColorScale} from './scale.js';

const DEFAULT_STAT = 'activation_variance';

/** Entry point called by TensorBoard. */
export async function render() {
  document.head.append(el('link', {attrs: {rel: 'stylesheet', href: './static/style.css'}}));
  const dashboard = new Dashboard(document.body);
  window.initdiagDashboard = dashboard;
  await dashboard.start();
}

/** Wait for `ms` milliseconds of quiet before calling `fn`. */
function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

class Dashboard {
  constructor(root) {
    this.root = root;
    this.tooltip = new Tooltip();
    this.status = el('div', {className: 'status', attrs: {role: 'status'}});
    this.notes = el('ul', {className: 'notes'});
    this.reload = el('button', {text: 'Reload', on: {click: () => this.start()}});
    root.append(el('header', {}, [
      el('h1', {text: 'initdiag'}),
      el('span', {className: 'subtitle', text: 'every layer at every step'}),
      this.reload,
    ]), this.status, this.notes);
    this.main = el('main');
    root.append(this.main);
    this.heatGeneration = 0;
    this.profileGeneration = 0;
    window.addEventListener('resize', debounce(() => this.redraw(), 150));
  }

  setStatus(text, kind = 'info') {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  /** Load the runs and flags, then draw every view. */
  async start() {
    this.setStatus('Loading\u2026');
    this.root.dataset.state = 'loading';
    clear(this.main);
    clear(this.notes);
    this.matrices = new Map();
    this.profiles = new Map();
    let runsBody;
    let flagsBody;
    try {
      [runsBody, flagsBody] = await Promise.all([getJson('runs'), getJson('flags')]);
    } catch (error) {
      this.setStatus(error.message, 'error');
      this.root.dataset.state = 'error';
      return;
    }
    this.runs = runsBody.runs || [];
    if (!this.runs.length) {
      this.empty(runsBody.other_runs || []);
      return;
    }
    this.byName = new Map(this.runs.map((r) => [r.run, r]));
    this.facts = new Map(this.runs.map((r) => [r.run,
      new Map((r.info || []).map((facts) => [facts.name, facts]))]));
    this.flags = flagsBody.flags || [];
    this.flagCells = new Map(this.runs.map((r) => [r.run, new Map()]));
    for (const flag of this.flags) {
      const cells = this.flagCells.get(flag.run);
      if (!cells) continue;
      const key = `${flag.layer}\u0000${flag.step}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(flag);
    }
    for (const run of this.runs) {
      for (const note of run.notes || []) this.notes.append(el('li', {text: `${run.run}: ${note}`}));
    }
    const other = runsBody.other_runs || [];
    if (other.length) {
      this.notes.append(el('li', {text: `Runs without InitDiagnostics data: ${other.join(', ')}`}));
    }
    const stats = [];
    for (const run of this.runs) for (const s of run.stats) if (!stats.includes(s)) stats.push(s);
    this.stat = stats.includes(this.stat) ? this.stat :
      (stats.includes(DEFAULT_STAT) ? DEFAULT_STAT : stats[0]);
    const names = this.runs.map((r) => r.run);
    this.selected = (this.selected || []).filter((r) => names.includes(r));
    if (!this.selected.length) this.selected = names.slice(0, 2);
    this.highlight = null;
    this.buildHeatmapSection(stats);
    this.buildProfileSection();
    this.buildFlagSection();
    this.setStatus(`${this.runs.length} run${this.runs.length === 1 ? '' : 's'} with ` +
        `InitDiagnostics data, ${this.flags.length} flag${this.flags.length === 1 ? '' : 's'}` +
        (other.length ? `; ${other.length} other run(s) without it` : '') + '.');
    await this.drawHeatmaps();
    await this.drawProfiles();
    this.root.dataset.state = 'ready';
    this.prefetch();
  }

  /** The page when no run has InitDiagnostics data. */
  empty(other) {
    this.setStatus('No InitDiagnostics runs in this log directory.', 'empty');
    const help = el('div', {className: 'empty'}, [
      el('p', {text: 'keras_initdiag.InitDiagnostics(log_dir=...) writes its events to ' +
        '<log_dir>/initdiag. Start TensorBoard with --logdir pointing at <log_dir> or a ' +
        'folder above it, or try: keras-initdiag demo --quick'}),
    ]);
    if (other.length) {
      help.append(el('p', {text: `Runs without InitDiagnostics data: ${other.join(', ')}`}));
    }
    this.main.append(help);
    this.root.dataset.state = 'empty';
  }

  // --- heatmaps ---------------------------------------------------------

  buildHeatmapSection(stats) {
    const statSelect = el('select', {attrs: {'aria-label': 'statistic', id: 'stat'},
      on: {change: async () => {
        this.stat = statSelect.value;
        await this.drawHeatmaps();
        this.prefetch();
      }}});
    for (const s of stats) statSelect.append(el('option', {text: s, attrs: {value: s}}));
    statSelect.value = this.stat;
    const scaleSelect = el('select', {attrs: {'aria-label': 'colour scale', id: 'scale'},
      on: {change: () => {
        this.perRunScale = scaleSelect.value === 'run';
        this.drawHeatmaps();
      }}}, [
      el('option', {text: 'one colour scale for all runs', attrs: {value: 'shared'}}),
      el('option', {text: 'a colour scale per run', attrs: {value: 'run'}}),
    ]);
    this.runBoxes = el('div', {className: 'runs'});
    for (const run of this.runs) {
      const box = el('input', {attrs: {type: 'checkbox', value: run.run},
        on: {change: () => this.toggleRun(run.run, box.checked)}});
      box.checked = this.selected.includes(run.run);
      const flags = run.num_flags ? ` (${run.num_flags} flags)` : '';
      this.runBoxes.append(el('label', {className: 'run'}, [box, run.run + flags]));
    }
    const all = el('button', {text: 'all runs', attrs: {id: 'all-runs'}, on: {click: () => {
      this.selected = this.runs.map((r) => r.run);
      this.syncRunBoxes();
      this.drawBoth();
    }}});
    this.legend = el('div', {className: 'legend'});
    this.heatmaps = el('div', {className: 'grid', attrs: {id: 'heatmaps'}});
    this.heatTiming = el('div', {className: 'timing'});
    this.main.append(el('section', {attrs: {id: 'heatmap-section'}}, [
      el('h2', {text: 'Layers \u00d7 steps'}),
      el('div', {className: 'controls'}, [el('label', {}, ['statistic ', statSelect]),
        scaleSelect, all]),
      this.runBoxes, this.legend, this.heatmaps, this.heatTiming,
    ]));
  }

  syncRunBoxes() {
    for (const box of this.runBoxes.querySelectorAll('input')) {
      box.checked = this.selected.includes(box.value);
    }
  }

  toggleRun(run, on) {
    const order = this.runs.map((r) => r.run);
    const chosen = new Set(this.selected);
    if (on) chosen.add(run);
    else chosen.delete(run);
    this.selected = order.filter((r) => chosen.has(r));
    this.drawBoth();
  }

  /** Heatmaps first (they are on top), then the profiles. */
  async drawBoth() {
    await this.drawHeatmaps();
    await this.drawProfiles();
  }

  /** The decoded matrix of one run and statistic (cached promise). */
  matrix(run, stat, points) {
    const key = `${run}\u0000${stat}\u0000${points}`;
    if (!this.matrices.has(key)) {
      this.matrices.set(key, getJson('heatmap', {run, stat, points}).then((body) => ({
        ...body, values: decodeFloat32(body.values),
      })));
    }
    return this.matrices.get(key);
  }

  /**
   * How many steps per layer to ask for: about one per device-pixel column of
   * a panel's plot (TensorBoard downsamples deterministically, so rows stay
   * aligned), rounded up so small resizes reuse what was fetched.
   */
  pointsFor(panel) {
    const ratio = window.devicePixelRatio || 1;
    const plot = Math.max(64, (panel.node.clientWidth - 200) * ratio);
    return Math.ceil(plot / 64) * 64;
  }

  async drawHeatmaps() {
    const generation = ++this.heatGeneration;
    const start = performance.now();
    const stat = this.stat;
    const runs = this.selected.slice();
    clear(this.heatmaps);
    const panels = new Map(runs.map((run) =>
      [run, new HeatmapPanel(this.heatmaps, run, this.tooltip)]));
    this.panels = panels;
    if (!runs.length) {
      this.heatmaps.append(el('p', {className: 'empty', text: 'Choose a run above.'}));
    }
    const points = runs.length ? this.pointsFor(panels.get(runs[0])) : 256;
    this.points = points;
    for (const panel of panels.values()) panel.message('Loading\u2026');
    const results = await Promise.allSettled(runs.map((run) =>
      this.byName.get(run).stats.includes(stat) ? this.matrix(run, stat, points) :
        Promise.reject(new Error(`This run has no ${stat} statistic.`))));
    if (generation !== this.heatGeneration) return;
    const fetched = performance.now();
    const matrices = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const shared = new ColorScale(stat, matrices.map((m) => m.values));
    let cells = 0;
    for (const [i, run] of runs.entries()) {
      // One panel per task, so the page answers input while the others draw.
      if (i) await new Promise((resolve) => setTimeout(resolve, 0));
      if (generation !== this.heatGeneration) return;
      const panel = panels.get(run);
      panel.setNotes(this.byName.get(run).notes || []);
      const result = results[i];
      if (result.status === 'rejected') {
        panel.message(result.reason.message);
        continue;
      }
      const matrix = result.value;
      const scale = this.perRunScale ? new ColorScale(stat, [matrix.values]) : shared;
      const highlight = this.highlight && this.highlight.run === run ? this.highlight : null;
      panel.draw(matrix, scale, this.flagCells.get(run), this.facts.get(run), highlight);
      if (highlight) panel.select(highlight, Boolean(panel.highlighted));
      cells += matrix.values.length;
    }
    drawLegend(this.legend, this.perRunScale ? null : shared, stat);
    const done = performance.now();
    this.timing = {runs: runs.length, cells, total: done - start, fetch: fetched - start,
      draw: done - fetched, points};
    this.heatTiming.textContent = `${runs.length} heatmap(s), ${cells.toLocaleString()} ` +
        `cells: data ${Math.round(this.timing.fetch)} ms, drawing ` +
        `${Math.round(this.timing.draw)} ms`;
    document.dispatchEvent(new CustomEvent('initdiag-rendered', {detail: this.timing}));
  }

  /** Fetch the current statistic of the runs not shown, while the page is idle. */
  prefetch() {
    const stat = this.stat;
    const points = this.points;
    const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 50));
    for (const run of this.runs) {
      if (!this.selected.includes(run.run) && run.stats.includes(stat)) {
        idle(() => this.matrix(run.run, stat, points).catch(() => {}));
      }
    }
  }

  // --- depth profiles ---------------------------------------------------

  buildProfileSection() {
    this.stepSlider = el('input', {attrs: {type: 'range', min: 0, step: 1,
      'aria-label': 'step', id: 'profile-step'}});
    this.stepLabel = el('output', {attrs: {id: 'profile-step-label'}});
    const redraw = debounce(() => this.drawProfiles(), 80);
    this.stepSlider.addEventListener('input', () => {
      this.step = this.profileSteps[Number(this.stepSlider.value)];
      this.stepLabel.textContent = `step ${this.step}`;
      redraw();
    });
    this.enabled = new Set(['activation_variance', 'activation_gradient_rms',
      'weight_variance', 'prediction']);
    const toggles = el('div', {className: 'series'});
    for (const s of [...SERIES, {stat: 'prediction', label: 'prediction', color: PREDICTION.color}]) {
      const box = el('input', {attrs: {type: 'checkbox'}, on: {change: () => {
        if (box.checked) this.enabled.add(s.stat);
        else this.enabled.delete(s.stat);
        this.drawProfiles();
      }}});
      box.checked = this.enabled.has(s.stat);
      const swatch = el('span', {className: 'swatch'});
      swatch.style.background = s.color;
      toggles.append(el('label', {className: 'key'}, [box, swatch, s.label]));
    }
    this.profileGrid = el('div', {className: 'grid', attrs: {id: 'profiles'}});
    this.main.append(el('section', {attrs: {id: 'profile-section'}}, [
      el('h2', {text: 'Depth profile (signal propagation)'}),
      el('div', {className: 'controls'}, [el('label', {}, ['step ', this.stepSlider]),
        this.stepLabel]),
      toggles,
      el('div', {className: 'legend', text: 'Under the axis: \u25b2 normalization, ' +
        '\u25c6 merge (arcs: its skip connections), \u25a0 model input, \u25cf op. ' +
        'Dashed line and band: the ' +
        'predicted activation variance and prediction \u00d7 exp(\u00b13 spread), ' +
        'when the run records them.'}),
      this.profileGrid,
    ]));
    this.syncSteps();
  }

  /** The slider's steps: every diagnosis step of the shown runs; keeps the step. */
  syncSteps() {
    const steps = new Set();
    for (const run of this.selected) for (const s of this.byName.get(run).steps) steps.add(s);
    this.profileSteps = [...steps].sort((a, b) => a - b);
    if (!this.profileSteps.length) this.profileSteps = [0];
    if (this.step === undefined || !this.profileSteps.includes(this.step)) {
      this.step = this.profileSteps.includes(0) ? 0 : this.profileSteps[0];
    }
    this.stepSlider.max = String(this.profileSteps.length - 1);
    this.stepSlider.value = String(this.profileSteps.indexOf(this.step));
    this.stepLabel.textContent = `step ${this.step}`;
  }

  /** The statistics the profiles need: the enabled series and the prediction. */
  profileStats() {
    const stats = SERIES.map((s) => s.stat).filter((s) => this.enabled.has(s));
    if (this.enabled.has('prediction')) stats.push(PREDICTION.stat, PREDICTION.spread);
    return stats.join(',');
  }

  profile(run, step, stats) {
    const key = `${run}\u0000${step}\u0000${stats}`;
    if (!this.profiles.has(key)) this.profiles.set(key, getJson('profile', {run, step, stats}));
    return this.profiles.get(key);
  }

  /** One panel per shown run, each drawn as soon as its data arrives. */
  async drawProfiles() {
    const generation = ++this.profileGeneration;
    this.syncSteps();
    const step = this.step;
    const stats = this.profileStats();
    clear(this.profileGrid);
    await Promise.all(this.selected.map(async (run) => {
      const panel = new ProfilePanel(this.profileGrid, run, this.tooltip);
      panel.message('Loading\u2026');
      let data;
      try {
        data = await this.profile(run, step, stats);
      } catch (error) {
        if (generation === this.profileGeneration) panel.message(error.message);
        return;
      }
      if (generation !== this.profileGeneration) return;
      if (!data.layers.length) panel.message('No depth-profile statistics.');
      else panel.draw(data, this.facts.get(run), this.enabled);
    }));
  }

  // --- flags ------------------------------------------------------------

  buildFlagSection() {
    const container = el('div');
    const verdicts = el('ul', {className: 'verdicts', attrs: {id: 'verdicts'}});
    drawVerdicts(verdicts, this.runs);
    this.main.append(el('section', {attrs: {id: 'flag-section'}}, [
      el('h2', {text: 'Flags'}), verdicts, container]));
    this.table = new FlagTable(container, (flag) => this.selectFlag(flag));
    this.table.setFlags(this.flags);
  }

  /** Show a flag's run and outline its cell. */
  async selectFlag(flag) {
    this.highlight = flag;
    if (!this.selected.includes(flag.run)) {
      const chosen = new Set([...this.selected, flag.run]);
      this.selected = this.runs.map((r) => r.run).filter((r) => chosen.has(r));
      this.syncRunBoxes();
      this.drawProfiles();
    }
    await this.drawHeatmaps();
    const panel = this.panels && this.panels.get(flag.run);
    if (panel) panel.node.scrollIntoView({block: 'nearest'});
  }

  redraw() {
    if (this.root.dataset.state !== 'ready') return;
    this.drawBoth();
  }
}
