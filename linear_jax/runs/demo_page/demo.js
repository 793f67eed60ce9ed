// The demo page: it holds the state, sends it to the server, and draws the answers.
// No maths here: scores, losses, gradients, steps, searches and surfaces all come from /api/*.
'use strict';

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf',
  '#bcbd22', '#7f7f7f'];
const METHOD_COLORS = {'random search': '#9467bd', 'random local search': '#ff7f0e', 'genetic algorithm': '#2ca02c',
  'gradient descent': '#1f77b4'};
const HP_SYMBOLS = {margin: 'Δ', delta: 'δ'};
const $ = (id) => document.getElementById(id);

const S = {
  cfg: null, dataset: 'points', datasetName: 'blobs', points: [], labels: [], numClasses: 3, view: [-1, 1, -1, 1],
  features: 'none', model: null, loss: 'svm', hparams: {}, penalty: 'l2', reg: 0.001,
  opt: {state: null, t: 0}, curve: [], curveStart: 0, path: [], result: null, imageN: 300, tool: 'move',
  running: false, inflight: false, pending: null, search: null, surface: null,
  initing: false, after: null,  // a new model asked for and not yet answered; a wish waiting for it
  gen: 0,  // counts the optimizer's restarts: a step answered for an earlier one is dropped
  problem: 0,  // counts changes of the data or the objective: a race answered for an earlier one is dropped
  focus: null,  // the point the keyboard moves (onKey), or none
};
const CURVE_MAX = 20000;  // the loss curve keeps its last this many steps (a long Run's grew without end)
window.demoTimings = [];  // {route, ms}: the benchmark reads these (the page's own requests, timed here)

function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return v.toFixed(3);
}

function setStatus(text, error) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function body(extra) {
  const b = {dataset: S.dataset, loss: S.loss, hparams: S.hparams, penalty: S.penalty, reg: S.reg, ...extra};
  if (S.dataset === 'points') {
    Object.assign(b, {points: S.points, labels: S.labels, num_classes: S.numClasses, view: S.view,
      features: S.features});
  } else {
    Object.assign(b, {n: S.imageN, seed: 0});
  }
  if (S.model && !('model' in b)) b.model = S.model;
  return b;
}

function optimizerBody() {
  return {method: $('opt-method').value, grad: $('opt-grad').value, learning_rate: +$('lr').value,
    momentum: +$('momentum').value, schedule: $('schedule').value, decay_rate: +$('decay-rate').value,
    decay_steps: Math.max(1, Math.round(+$('decay-steps').value)), batch_size: Math.round(+$('batch').value),
    state: S.opt.state, t: S.opt.t, seed: 0};
}

async function api(route, payload) {
  const t0 = performance.now();
  const r = await fetch('/api/' + route, {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(payload)});
  const j = await r.json();
  const ms = performance.now() - t0;
  window.demoTimings.push({route, ms});
  if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
  return [j, ms];
}

// The routes that carry an edit (of the data, the objective or W): one waiting drops a step's answer, and
// one refused greys the figures (a step refused leaves its model's figures true).
const EDIT_ROUTES = ['evaluate', 'init', 'drag'];

// One request in flight at a time; while one runs, only the latest wish is kept (drags stay live).
// An edit's payload is taken when the wish is made, so an answer arriving meanwhile cannot undo it; a
// step's when it is sent (`atSend`), so each step starts where the one before it ended. A new model
// (`init`) is never superseded: an edit wished while it is asked for waits for its answer and is made
// on the model it brings (made on the one it replaces, of another shape, every request after was refused).
function request(route, makePayload, onDone, atSend) {
  const later = atSend || S.initing;
  const wish = {route, payload: later ? null : makePayload(), makePayload, onDone, gen: later ? null : S.gen};
  if (route === 'init') S.initing = true;
  if (S.pending && S.pending.route === 'init' && route !== 'init') S.after = wish;  // the init goes first
  else S.pending = wish;
  if (!S.inflight) pump();
}

// A new start of the optimizer (new W, loss, data, method, schedule): its state and step count restart
// together, so the step size shown is the one the next step takes.
function resetOpt() {
  S.gen += 1;
  S.opt = {state: null, t: 0};
  if (S.cfg) drawCurve();
}

async function pump() {
  if (!S.pending) return;
  const {route, payload, makePayload, onDone} = S.pending;
  const gen = S.pending.gen === null ? S.gen : S.pending.gen;  // a payload made now is of the optimizer now
  S.pending = null;
  S.inflight = true;
  try {
    const [j, ms] = await api(route, payload || makePayload());
    // A newer wish supersedes this answer; a step's is kept unless an edit is waiting, which was made on
    // the weights before the step and applies to them (the step is dropped, and counts nowhere).
    if (S.pending && route !== 'init' && (route !== 'step' || EDIT_ROUTES.includes(S.pending.route))) return;
    if (route === 'step' && gen !== S.gen) return;  // steps of a model the optimizer has since left
    if (onDone) onDone(j);
    show(j);
    setStatus(`${route}: ${ms.toFixed(0)} ms`);
  } catch (e) {
    // A refused input leaves the figures of the last one accepted: greyed, and said, until one is.
    const stale = EDIT_ROUTES.includes(route);
    setStatus(stale ? `${e.message} (greyed: the figures of the last input accepted)` : e.message, true);
    if (stale) document.querySelector('main').classList.add('stale');
    if (route !== 'surface') {  // a slice too large to draw leaves Run running
      S.running = false;
      $('run').textContent = 'Run';
    }
  } finally {
    S.inflight = false;
    if (route === 'init') S.initing = Boolean(S.pending && S.pending.route === 'init');
    if (!S.pending && S.after) [S.pending, S.after] = [S.after, null];
    if (S.pending) pump();
  }
}

function evaluate() { request('evaluate', () => body()); }

// The data or the objective changed: a race's table and weights are another problem's (greyed, refused).
function problemChanged() {
  S.problem += 1;
  $('search-table').classList.add('stale');
}

function reinit(seed) {
  resetOpt();
  problemChanged();
  S.curve = [];
  S.curveStart = 0;
  S.path = [];
  S.surface = null;
  request('init', () => { const b = body({seed: seed || 0}); delete b.model; return b; }, (j) => {
    S.model = j.model;
  });
}

// ------------------------------------------------------------------ drawing

function show(j) {
  document.querySelector('main').classList.remove('stale');
  S.result = j;
  S.model = j.model;
  drawGeometric();
  drawAlgebraic();
  drawTemplates();
  drawGradcheck();
  drawCurve();
  drawSurface();
}

function geoFrame() {
  const c = $('geo');
  const m = {l: 58, r: 14, t: 12, b: 46};
  const w = c.width - m.l - m.r, h = c.height - m.t - m.b;
  const v = S.dataset === 'points' ? S.view : (S.result && S.result.view) || [-1, 1, -1, 1];
  return {c, m, w, h, v,
    px: (x) => m.l + (x - v[0]) / (v[1] - v[0]) * w,
    py: (y) => m.t + (v[3] - y) / (v[3] - v[2]) * h,
    dx: (X) => v[0] + (X - m.l) / w * (v[1] - v[0]),
    dy: (Y) => v[3] - (Y - m.t) / h * (v[3] - v[2])};
}

function niceTicks(lo, hi, n) {
  const span = hi - lo, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => span / s <= n) || mag * 10;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Math.abs(t) < 1e-12 ? 0 : t);
  return out;
}

function axes(ctx, f, xlabel, ylabel) {
  ctx.strokeStyle = '#333'; ctx.lineWidth = 1; ctx.fillStyle = '#222'; ctx.font = '14px sans-serif';
  ctx.strokeRect(f.m.l, f.m.t, f.w, f.h);
  ctx.textAlign = 'center'; ctx.textBaseline = 'top';
  for (const t of niceTicks(f.v[0], f.v[1], 8)) {
    const X = f.px(t);
    ctx.beginPath(); ctx.moveTo(X, f.m.t + f.h); ctx.lineTo(X, f.m.t + f.h + 5); ctx.stroke();
    ctx.fillText(+t.toFixed(6), X, f.m.t + f.h + 7);
  }
  ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
  for (const t of niceTicks(f.v[2], f.v[3], 8)) {
    const Y = f.py(t);
    ctx.beginPath(); ctx.moveTo(f.m.l - 5, Y); ctx.lineTo(f.m.l, Y); ctx.stroke();
    ctx.fillText(+t.toFixed(6), f.m.l - 7, Y);
  }
  ctx.font = '16px sans-serif'; ctx.textAlign = 'center'; ctx.textBaseline = 'bottom';
  ctx.fillText(xlabel, f.m.l + f.w / 2, f.c.height - 2);
  ctx.save(); ctx.translate(16, f.m.t + f.h / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = 'middle';
  ctx.fillText(ylabel, 0, 0); ctx.restore();
}

function classColor(k) { return COLORS[k % COLORS.length]; }

function lineColor(row) {
  const outputs = S.model ? S.model.b.length : 0;
  return outputs === 1 ? classColor(1) : classColor(row);
}

function drawGeometric() {
  const f = geoFrame(), ctx = f.c.getContext('2d'), j = S.result;
  ctx.clearRect(0, 0, f.c.width, f.c.height);
  if (!j) return;
  if (j.regions) {  // one pixel per cell, scaled up without smoothing: no seams between cells
    const g = j.regions, off = document.createElement('canvas');
    off.width = off.height = g.size;
    const octx = off.getContext('2d'), img = octx.createImageData(g.size, g.size);
    Array.from(g.classes, Number).forEach((k, i) => {  // one digit a cell: the class it wins
      const hex = classColor(k);
      for (let q = 0; q < 3; q++) img.data[4 * i + q] = 255 - 0.25 * (255 - parseInt(hex.slice(1 + 2 * q, 3 + 2 * q), 16));
      img.data[4 * i + 3] = 255;
    });
    octx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, f.m.l, f.m.t, f.w, f.h);
  }
  const imageData = S.dataset !== 'points';
  axes(ctx, f, imageData ? 'principal component 1 (a picture of the data only)' : 'x₁',
    imageData ? 'principal component 2' : 'x₂');
  ctx.save();
  ctx.beginPath(); ctx.rect(f.m.l, f.m.t, f.w, f.h); ctx.clip();
  const pts = imageData ? j.points : S.points, labels = imageData ? j.labels : S.labels;
  pts.forEach((p, i) => {
    const X = f.px(p[0]), Y = f.py(p[1]), wrong = j.predictions && j.predictions[i] !== labels[i];
    ctx.beginPath(); ctx.arc(X, Y, imageData ? 4 : 6.5, 0, 2 * Math.PI);
    ctx.fillStyle = classColor(labels[i]); ctx.fill();
    ctx.lineWidth = wrong ? 3 : 1.2; ctx.strokeStyle = wrong ? '#000' : '#fff'; ctx.stroke();
  });
  if (!imageData && S.focus !== null && S.points[S.focus] && document.activeElement === f.c) {
    const p = S.points[S.focus];  // the keyboard's point: a dashed ring
    ctx.setLineDash([4, 3]); ctx.lineWidth = 2; ctx.strokeStyle = '#000';
    ctx.beginPath(); ctx.arc(f.px(p[0]), f.py(p[1]), 11, 0, 2 * Math.PI); ctx.stroke(); ctx.setLineDash([]);
  }
  (j.lines || []).forEach((ln, row) => {
    if (!ln || !ln.visible) return;
    const col = lineColor(row);
    ctx.strokeStyle = col; ctx.lineWidth = 3.5;
    ctx.beginPath(); ctx.moveTo(f.px(ln.p1[0]), f.py(ln.p1[1])); ctx.lineTo(f.px(ln.p2[0]), f.py(ln.p2[1]));
    ctx.stroke();
    const h = handlePos(ln, f), A = [f.px(ln.anchor[0]), f.py(ln.anchor[1])];
    ctx.lineWidth = 2.5; ctx.beginPath(); ctx.moveTo(A[0], A[1]); ctx.lineTo(h[0], h[1]); ctx.stroke();
    const ang = Math.atan2(h[1] - A[1], h[0] - A[0]);
    ctx.beginPath(); ctx.moveTo(h[0], h[1]);
    ctx.lineTo(h[0] - 12 * Math.cos(ang - 0.4), h[1] - 12 * Math.sin(ang - 0.4));
    ctx.lineTo(h[0] - 12 * Math.cos(ang + 0.4), h[1] - 12 * Math.sin(ang + 0.4)); ctx.closePath();
    ctx.fillStyle = col; ctx.fill();
    ctx.beginPath(); ctx.arc(h[0], h[1], 8, 0, 2 * Math.PI); ctx.fillStyle = '#fff'; ctx.fill();
    ctx.strokeStyle = col; ctx.lineWidth = 3; ctx.stroke();
    const L = [f.px(ln.p2[0]), f.py(ln.p2[1])];
    ctx.font = 'bold 15px sans-serif'; ctx.fillStyle = col; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
    const lx = Math.min(Math.max(L[0], f.m.l + 30), f.m.l + f.w - 30);
    const ly = Math.min(Math.max(L[1], f.m.t + 12), f.m.t + f.h - 12);
    ctx.fillText(S.model.b.length === 1 ? 's = 0' : `s${sub(row)} = 0`, lx, ly);
  });
  ctx.restore();
}

function sub(k) { return String(k).split('').map((d) => '₀₁₂₃₄₅₆₇₈₉'[+d]).join(''); }

function handlePos(ln, f) {
  const A = [f.px(ln.anchor[0]), f.py(ln.anchor[1])];
  return [A[0] + 48 * ln.normal[0], A[1] - 48 * ln.normal[1]];
}

function drawAlgebraic() {
  const j = S.result, m = S.model;
  if (!j || !m) return;
  const table = $('params-table'), d = m.W[0].length;
  const focused = document.activeElement;
  if (!table.contains(focused) || table.rows.length !== m.W.length + 1 || table.rows[0].cells.length !== d + 2) {
    const head = ['<tr><th>row</th>'];
    for (let k = 0; k < d; k++) head.push(`<th>W[·,${k}]</th>`);
    head.push('<th>b</th></tr>');
    const rows = m.W.map((w, r) => {
      const name = m.b.length === 1 ? 'class 1 vs 0' : `class ${r}`;
      const cells = w.map((v, k) => `<td><input type="number" step="0.1" data-r="${r}" data-k="${k}"></td>`);
      return `<tr><th><span class="swatch" style="background:${lineColor(r)}"></span>${name}</th>${cells.join('')}` +
        `<td><input type="number" step="0.1" data-r="${r}" data-k="b"></td></tr>`;
    });
    table.innerHTML = d > 12 ? `<tr><th colspan="3">W is ${m.W.length}×${d}: see its rows as pictures below</th></tr>` +
      m.b.map((v, r) => `<tr><th>b[${r}]</th><td><input type="number" step="0.1" data-r="${r}" data-k="b"></td></tr>`).join('')
      : head.join('') + rows.join('');
  }
  table.querySelectorAll('input').forEach((inp) => {
    if (inp === focused) return;
    const r = +inp.dataset.r, k = inp.dataset.k;
    inp.value = (k === 'b' ? m.b[r] : m.W[r][+k]).toFixed(3);
  });
  $('data-loss').textContent = fmt(j.data_loss);
  $('penalty').textContent = `${fmt(j.reg_penalty)}  (R = ${fmt(j.penalty)})`;
  $('total').textContent = fmt(j.total);
  $('accuracy').textContent = j.accuracy === null ? '—' : (100 * j.accuracy).toFixed(1) + ' %';
  drawExamples(j);
}

function drawExamples(j) {
  const imageData = S.dataset !== 'points', labels = imageData ? j.labels : S.labels;
  const outputs = S.model.b.length, shown = Math.min(labels.length, 120);
  const head = ['<tr><th>i</th>'];
  if (!imageData) head.push('<th>x₁</th><th>x₂</th>');
  head.push('<th>y</th>');
  for (let c = 0; c < outputs; c++) head.push(outputs === 1 ? '<th>s</th>' : `<th>s${sub(c)}</th>`);
  head.push('<th>Lᵢ</th></tr>');
  $('example-table').tHead.innerHTML = head.join('');
  const rows = [];
  for (let i = 0; i < shown; i++) {
    const wrong = j.predictions[i] !== labels[i];
    const cells = [`<td>${i}</td>`];
    if (!imageData) cells.push(`<td>${S.points[i][0].toFixed(2)}</td><td>${S.points[i][1].toFixed(2)}</td>`);
    cells.push(`<td><span class="swatch" style="background:${classColor(labels[i])}"></span>${labels[i]}</td>`);
    j.scores[i].forEach((s) => cells.push(`<td>${fmt(s)}</td>`));
    cells.push(`<td>${fmt(j.losses[i])}</td>`);
    rows.push(`<tr class="${wrong ? 'wrong' : ''}">${cells.join('')}</tr>`);
  }
  if (labels.length > shown) rows.push(`<tr><td colspan="9">… the first ${shown} of ${labels.length}</td></tr>`);
  $('example-table').tBodies[0].innerHTML = rows.join('');
}

function drawTemplates() {
  const j = S.result, panel = $('visual-panel');
  if (!j || !j.templates) { panel.classList.add('hidden'); return; }
  panel.classList.remove('hidden');
  const box = $('templates'), shape = j.image_shape;
  const [h, w] = shape.length === 3 ? [shape[1], shape[2]] : shape, ch = shape.length === 3 ? shape[0] : 1;
  if (box.children.length !== j.templates.length) {
    box.innerHTML = j.templates.map((_, c) => `<figure><canvas width="${w}" height="${h}"></canvas>` +
      `<figcaption><span class="swatch" style="background:${classColor(c)}"></span>class ${c}</figcaption></figure>`).join('');
  }
  j.templates.forEach((t, c) => {
    const cv = box.children[c].querySelector('canvas'), ctx = cv.getContext('2d'), img = ctx.createImageData(w, h);
    for (let p = 0; p < w * h; p++) {
      for (let k = 0; k < 3; k++) img.data[4 * p + k] = t[ch === 3 ? 3 * p + k : p];
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  });
}

function drawGradcheck() {
  const g = S.result && S.result.gradcheck;
  if (!g) return;
  const m = g.max_relative_error, kinks = g.at_kink.filter(Boolean).length;
  const parts = [];
  if ('analytic_vs_autodiff' in m) parts.push(`hand-derived vs jax.grad <b>${fmt(m.analytic_vs_autodiff)}</b>`);
  if ('analytic_vs_numerical' in m) parts.push(`hand-derived vs finite differences <b>${fmt(m.analytic_vs_numerical)}</b>`);
  parts.push(`jax.grad vs finite differences <b>${fmt(m.autodiff_vs_numerical)}</b>`);
  $('gradcheck-summary').innerHTML = `largest relative error away from kinks: ${parts.join('; ')}.<br>` +
    `<b>${kinks}</b> of ${g.checked} coordinates at a kink` + (g.checked < g.total ? ` (${g.checked} of ${g.total} checked)` : '') +
    `; central differences with h = ${g.h}.` + (S.opt.t ? ` After step ${S.opt.t}.` : '');
  $('gradcheck-table').tHead.innerHTML = '<tr><th>coordinate</th><th>hand-derived</th><th>jax.grad</th>' +
    '<th>finite diff.</th><th>rel. error</th><th>kink</th></tr>';
  const rel = g.relative_error.analytic_vs_numerical || g.relative_error.autodiff_vs_numerical;
  $('gradcheck-table').tBodies[0].innerHTML = g.coordinates.map((name, i) => `<tr class="${g.at_kink[i] ? 'kink' : ''}">` +
    `<th>${name}</th><td>${fmt(g.analytic ? g.analytic[i] : null)}</td><td>${fmt(g.autodiff[i])}</td>` +
    `<td>${fmt(g.numerical[i])}</td><td>${fmt(rel[i])}</td><td>${g.at_kink[i] ? 'kink' : ''}</td></tr>`).join('');
}

function plotFrame(c, xs, ys, logy) {
  const m = {l: 70, r: 14, t: 12, b: 44}, w = c.width - m.l - m.r, h = c.height - m.t - m.b;
  const ty = (y) => (logy ? Math.log10(Math.max(y, 1e-12)) : y);
  const lo = (a) => a.reduce((m, v) => Math.min(m, v), Infinity), hi = (a) => a.reduce((m, v) => Math.max(m, v), -Infinity);
  let y0 = lo(ys.map(ty)), y1 = hi(ys.map(ty));
  if (!(y1 > y0)) { y0 -= 0.5; y1 += 0.5; }
  const pad = 0.05 * (y1 - y0);
  const v = [lo(xs), hi(xs) > lo(xs) ? hi(xs) : lo(xs) + 1, y0 - pad, y1 + pad];
  return {c, m, w, h, v, ty, px: (x) => m.l + (x - v[0]) / (v[1] - v[0]) * w, py: (y) => m.t + (v[3] - ty(y)) / (v[3] - v[2]) * h};
}

function polyline(ctx, f, xs, ys, color) {
  ctx.strokeStyle = color; ctx.lineWidth = 2.5; ctx.beginPath();
  xs.forEach((x, i) => { if (ys[i] === null) return; const X = f.px(x), Y = f.py(ys[i]); i ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
  ctx.stroke();
}

function drawCurve() {
  const c = $('curve'), ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  const ys = S.curve.filter((y) => y !== null);
  $('opt-info').textContent = `t = ${S.opt.t}` + (S.opt.lr !== undefined ? `, step size now ${fmt(S.opt.lr)}` : '') +
    (S.result ? `, L = ${fmt(S.result.total)}` : '');
  if (ys.length < 1) { ctx.fillStyle = '#777'; ctx.font = '15px sans-serif'; ctx.fillText('press Step or Run', 80, 100); return; }
  const xs = S.curve.map((_, i) => S.curveStart + i);
  const f = plotFrame(c, xs.length > 1 ? xs : [0, 1], ys, false);
  axes(ctx, f, 'step', 'total loss L');
  polyline(ctx, f, xs, S.curve, '#0b5cad');
  if (xs.length < 30) xs.forEach((x, i) => { ctx.beginPath(); ctx.arc(f.px(x), f.py(S.curve[i]), 3, 0, 2 * Math.PI); ctx.fillStyle = '#0b5cad'; ctx.fill(); });
}

function drawSurface() {
  const c = $('surface'), ctx = c.getContext('2d'), s = S.surface;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!s) { ctx.fillStyle = '#777'; ctx.font = '15px sans-serif'; ctx.fillText('press “Draw slice”', 80, 100); return; }
  const m = {l: 58, r: 70, t: 12, b: 46}, w = c.width - m.l - m.r, h = c.height - m.t - m.b;
  const v = [-s.radius, s.radius, -s.radius, s.radius];
  const f = {c, m, w, h, v, px: (x) => m.l + (x - v[0]) / (v[1] - v[0]) * w, py: (y) => m.t + (v[3] - y) / (v[3] - v[2]) * h};
  const flat = s.values.flat().filter((x) => x !== null), lo = Math.min(...flat), hi = Math.max(...flat);
  const tone = (val) => Math.log1p(Math.max(0, val - lo)) / Math.log1p(Math.max(hi - lo, 1e-12));
  const n = s.grid, cw = w / n, ch = h / n;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < n; k++) {
      const val = s.values[r][k];
      ctx.fillStyle = val === null ? '#000' : viridis(tone(val));
      ctx.fillRect(m.l + k * cw - 0.5, m.t + (n - 1 - r) * ch - 0.5, cw + 1, ch + 1);
    }
  }
  for (let i = 0; i < 100; i++) { ctx.fillStyle = viridis(1 - i / 99); ctx.fillRect(c.width - 52, m.t + i * h / 100, 14, h / 100 + 1); }
  ctx.fillStyle = '#222'; ctx.font = '13px sans-serif'; ctx.textAlign = 'left';
  ctx.fillText(fmt(hi), c.width - 36, m.t + 8); ctx.fillText(fmt(lo), c.width - 36, m.t + h - 2);
  axes(ctx, f, 'a: along d₁ (start → now)', 'b: along d₂ (random, ⟂ d₁)');
  if (s.path.length) {
    ctx.strokeStyle = '#fff'; ctx.lineWidth = 2; ctx.beginPath();
    s.path.forEach((p, i) => { const X = f.px(p[0]), Y = f.py(p[1]); i ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
    ctx.stroke();
    ctx.fillStyle = '#fff';
    s.path.forEach((p) => { ctx.beginPath(); ctx.arc(f.px(p[0]), f.py(p[1]), 2.5, 0, 2 * Math.PI); ctx.fill(); });
  }
  ctx.beginPath(); ctx.arc(f.px(0), f.py(0), 7, 0, 2 * Math.PI); ctx.fillStyle = '#e00'; ctx.fill();
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 2; ctx.stroke();
}

function viridis(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), u = x - i;
  const c = stops[i].map((a, k) => Math.round(a + u * (stops[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function drawSearch() {
  const c = $('search-curve'), ctx = c.getContext('2d'), s = S.search;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!s) return;
  const xs = s.methods.flatMap((m) => m.curve_evals), ys = s.methods.flatMap((m) => m.curve_loss).filter((y) => y !== null && y > 0);
  const f = plotFrame(c, xs, ys, true);
  axes(ctx, f, 'loss evaluations spent', 'best loss so far');
  ctx.save(); ctx.beginPath(); ctx.rect(f.m.l, f.m.t, f.w, f.h); ctx.clip();
  s.methods.forEach((m) => polyline(ctx, f, m.curve_evals, m.curve_loss, METHOD_COLORS[m.method] || '#333'));
  ctx.restore();
  ctx.font = '14px sans-serif'; ctx.textAlign = 'left';
  s.methods.forEach((m, i) => { ctx.fillStyle = METHOD_COLORS[m.method]; ctx.fillRect(f.m.l + f.w - 190, f.m.t + 8 + 18 * i, 14, 4);
    ctx.fillStyle = '#222'; ctx.fillText(m.method, f.m.l + f.w - 170, f.m.t + 12 + 18 * i); });
  $('search-table').classList.remove('stale');
  $('search-table').tBodies[0].innerHTML = s.methods.map((m, i) => `<tr><th style="color:${METHOD_COLORS[m.method]}">${m.method}</th>` +
    `<td>${fmt(m.best_loss)}</td><td>${m.evaluations}</td><td><button class="secondary" data-i="${i}">use these weights</button></td></tr>`).join('');
}

// ------------------------------------------------------------------ interaction

let drag = null;

function pointerPos(e) {
  const c = $('geo'), r = c.getBoundingClientRect();
  return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height];
}

function hit(X, Y) {
  const f = geoFrame(), j = S.result;
  if (!j || S.dataset !== 'points') return null;
  const lines = j.lines || [];
  for (let row = 0; row < lines.length; row++) {
    const ln = lines[row];
    if (ln && ln.visible) { const h = handlePos(ln, f); if (Math.hypot(X - h[0], Y - h[1]) < 12) return {kind: 'rotate', row, anchor: ln.anchor}; }
  }
  for (let i = S.points.length - 1; i >= 0; i--) {
    if (Math.hypot(X - f.px(S.points[i][0]), Y - f.py(S.points[i][1])) < 9) return {kind: 'point', i};
  }
  for (let row = 0; row < lines.length; row++) {
    const ln = lines[row];
    if (!ln || !ln.visible) continue;
    const a = [f.px(ln.p1[0]), f.py(ln.p1[1])], b = [f.px(ln.p2[0]), f.py(ln.p2[1])];
    const L = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const t = Math.max(0, Math.min(1, ((X - a[0]) * (b[0] - a[0]) + (Y - a[1]) * (b[1] - a[1])) / (L * L)));
    if (Math.hypot(X - a[0] - t * (b[0] - a[0]), Y - a[1] - t * (b[1] - a[1])) < 7) return {kind: 'shift', row};
  }
  return null;
}

function onDown(e) {
  const [X, Y] = pointerPos(e), f = geoFrame();
  if (S.dataset !== 'points') return;
  const h = hit(X, Y);
  if (S.tool === 'add' && !(X < f.m.l || X > f.m.l + f.w || Y < f.m.t || Y > f.m.t + f.h)) {
    if (S.points.length >= S.cfg.limits.points) { setStatus(`at most ${S.cfg.limits.points} points`, true); return; }
    S.points.push([+f.dx(X).toFixed(4), +f.dy(Y).toFixed(4)]);
    S.labels.push(+$('add-class').value);
    problemChanged();
    evaluate();
    return;
  }
  if (S.tool === 'remove') {
    if (h && h.kind === 'point') {
      S.points.splice(h.i, 1); S.labels.splice(h.i, 1);
      if (S.focus !== null && S.focus >= h.i) S.focus = S.focus > h.i ? S.focus - 1 : null;  // the same point, or none
      problemChanged(); evaluate();
    }
    return;
  }
  if (h) { drag = h; $('geo').setPointerCapture(e.pointerId); e.preventDefault(); }
}

function onMove(e) {
  const [X, Y] = pointerPos(e), f = geoFrame();
  if (!drag) { const h = hit(X, Y); $('geo').style.cursor = h ? (h.kind === 'rotate' ? 'grab' : 'move') : 'crosshair'; return; }
  const to = [f.dx(X), f.dy(Y)];
  if (drag.kind === 'point') {  // kept inside the view, where it can be grabbed again
    const inside = [f.dx(Math.min(Math.max(X, f.m.l), f.m.l + f.w)), f.dy(Math.min(Math.max(Y, f.m.t), f.m.t + f.h))];
    S.points[drag.i] = [+inside[0].toFixed(4), +inside[1].toFixed(4)]; problemChanged(); evaluate(); return;
  }
  request('drag', () => body({drag: {row: drag.row, kind: drag.kind, to, anchor: drag.anchor}}));
}

function onUp() { drag = null; }

// The points by keyboard (the canvas takes the focus with Tab): [ and ] select a point, the arrows move
// it (Shift: five times as far), Delete removes it and Enter adds one of the Add menu's class at the
// view's centre. The lines move with the W and b entries of the algebraic table.
const KEY_STEP = 0.02;  // of the view's width or height, an arrow's move
function onKey(e) {
  if (S.dataset !== 'points' || e.altKey || e.ctrlKey || e.metaKey) return;
  const n = S.points.length, v = S.view, at = S.focus;
  const arrows = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]};
  if (e.key === '[' || e.key === ']') {
    if (!n) return;
    S.focus = at === null ? (e.key === ']' ? 0 : n - 1) : (at + (e.key === ']' ? 1 : n - 1)) % n;
  } else if (arrows[e.key] && at !== null) {
    const [ax, ay] = arrows[e.key], k = KEY_STEP * (e.shiftKey ? 5 : 1), p = S.points[at];
    const x = Math.min(Math.max(p[0] + ax * k * (v[1] - v[0]), v[0]), v[1]);
    const y = Math.min(Math.max(p[1] + ay * k * (v[3] - v[2]), v[2]), v[3]);
    S.points[at] = [+x.toFixed(4), +y.toFixed(4)]; problemChanged(); evaluate();
  } else if ((e.key === 'Delete' || e.key === 'Backspace') && at !== null) {
    S.points.splice(at, 1); S.labels.splice(at, 1);
    S.focus = S.points.length ? Math.min(at, S.points.length - 1) : null; problemChanged(); evaluate();
  } else if (e.key === 'Enter') {
    if (n >= S.cfg.limits.points) { setStatus(`at most ${S.cfg.limits.points} points`, true); return; }
    S.points.push([+((v[0] + v[1]) / 2).toFixed(4), +((v[2] + v[3]) / 2).toFixed(4)]);
    S.labels.push(+$('add-class').value); S.focus = n; problemChanged(); evaluate();
  } else {
    return;  // Tab and every other key keep their meaning
  }
  e.preventDefault();  // an arrow would scroll the page
  drawGeometric();
}

function doStep(steps) {
  request('step', () => body({optimizer: optimizerBody(), steps}), onSteps, true);
}

function onSteps(j) {
  for (const y of j.curve) S.curve.push(y);
  if (S.curve.length > CURVE_MAX) {
    S.curveStart += S.curve.length - CURVE_MAX;
    S.curve = S.curve.slice(-CURVE_MAX);
  }
  if (!S.path.length) S.path.push(S.model);
  S.path.push(...j.path);
  keepPathBounded();
  S.opt = {state: j.optimizer.state, t: j.optimizer.t, lr: j.optimizer.learning_rate_now};
  if ($('surface-follow').checked) S.surfaceDue = true;
}

// The path the surface shows holds at most PATH_NUMBERS numbers (a CIFAR-shaped W has 30,720): every
// other one is dropped when it grows past them, the start and the latest kept, so its request body stays
// small and the page's memory bounded.
const PATH_NUMBERS = 60000;
function keepPathBounded() {
  const size = S.path.length ? S.path[0].W.length * (S.path[0].W[0].length + 1) : 1;
  const most = Math.max(3, Math.min(S.cfg.limits.path, Math.floor(PATH_NUMBERS / size)));
  while (S.path.length > most) S.path = S.path.filter((_, i) => i % 2 === 0 || i === S.path.length - 1);
}

async function runLoop() {
  while (S.running) {
    if (!S.inflight && !S.pending) doStep(Math.max(1, Math.min(200, Math.round(+$('per-frame').value))));
    await new Promise((r) => setTimeout(r, 30));
    if (S.surfaceDue && !S.inflight && !S.pending) drawSurfaceRequest();
  }
}

function drawSurfaceRequest() {
  S.surfaceDue = false;
  request('surface', () => body({path: S.path.slice(0, -1)}), (j) => { S.surface = j; return j; }, true);
}

// The surface's answer is not an evaluation: keep the last evaluation on show.
const showEvaluation = show;
show = function (j) { if (j && j.values && j.grid) { drawSurface(); return; } showEvaluation(j); };

function onLossChange() {
  const prev = S.cfg.losses.find((l) => l.name === S.loss), next = S.cfg.losses.find((l) => l.name === $('loss-select').value);
  if (next.targets === 'binary' && S.numClasses !== 2) {  // else every request after it is refused
    $('loss-select').value = S.loss;
    setStatus(`${next.name} is a binary loss: it needs 2 classes, and these data have ${S.numClasses}`, true);
    return;
  }
  S.loss = next.name;
  S.hparams = Object.fromEntries(Object.entries(next.hparams).map(([k, v]) => [k, v.default]));
  buildHparams(next);
  resetOpt();
  problemChanged();
  S.curve = [];  // another loss's totals are not one curve
  S.curveStart = 0;
  if (!prev || (prev.targets === 'binary') !== (next.targets === 'binary')) reinit(); else evaluate();
}

function buildHparams(spec) {
  $('hparams').innerHTML = Object.entries(spec.hparams).map(([k, v]) =>
    `<label title="${k}">${HP_SYMBOLS[k] || k} <input type="number" data-hp="${k}" step="0.1" min="${v.bounds[0]}" max="${v.bounds[1]}" value="${S.hparams[k]}"></label>`).join('');
  $('hparams').querySelectorAll('input').forEach((inp) => inp.addEventListener('input', () => {
    if (inp.value === '') return; S.hparams[inp.dataset.hp] = +inp.value; problemChanged(); evaluate();
  }));
}

async function loadDataset(name) {
  S.running = false; $('run').textContent = 'Run';
  try {
    const [d] = await api('dataset', {name, n: name in S.cfg.image_sets ? 300 : 90, seed: 0});
    S.datasetName = name;
    if (d.dataset === 'points') {
      Object.assign(S, {dataset: 'points', points: d.points, labels: d.labels, numClasses: d.num_classes, view: d.view, focus: null});
      S.features = $('features').checked && d.case ? d.case : 'none';
      $('features').disabled = !d.case;
      if (!d.case) $('features').checked = false;
      S.caseName = d.case;
    } else {
      Object.assign(S, {dataset: d.dataset, imageN: d.n, numClasses: 10, features: 'none'});
      $('features').checked = false; $('features').disabled = true;
    }
    fillClasses();
    const spec = S.cfg.losses.find((l) => l.name === S.loss);
    if (spec.targets === 'binary' && S.numClasses !== 2) { $('loss-select').value = 'softmax'; onLossChange(); }
    S.model = null; S.search = null; drawSearch();
    reinit();
  } catch (e) { setStatus(e.message, true); }
}

function fillClasses() {
  $('add-class').innerHTML = Array.from({length: S.numClasses}, (_, k) => `<option value="${k}">class ${k}</option>`).join('');
}

function option(value, label) { return `<option value="${value}">${label}</option>`; }

async function start() {
  const r = await fetch('/api/config');
  S.cfg = await r.json();
  $('dataset-select').innerHTML = Object.entries(S.cfg.point_sets).map(([k, v]) => option(k, v)).join('') +
    Object.entries(S.cfg.image_sets).map(([k, v]) => option(k, v)).join('');
  const groups = {class: 'multiclass (C scores)', binary: 'binary (one score, 2 classes)', real: 'regression on one-hot targets'};
  $('loss-select').innerHTML = Object.entries(groups).map(([kind, label]) => `<optgroup label="${label}">` +
    S.cfg.losses.filter((l) => l.targets === kind).map((l) => option(l.name, l.name)).join('') + '</optgroup>').join('');
  $('penalty-select').innerHTML = S.cfg.penalties.map((p) => option(p, p.toUpperCase())).join('');
  $('opt-method').innerHTML = S.cfg.optimizers.map((o) => option(o, o)).join('');
  $('opt-method').value = 'momentum';
  $('schedule').innerHTML = S.cfg.schedules.map((o) => option(o, o.replace('_', ' '))).join('');
  S.loss = S.cfg.default_loss;
  $('loss-select').value = S.loss;
  const spec = S.cfg.losses.find((l) => l.name === S.loss);
  S.hparams = Object.fromEntries(Object.entries(spec.hparams).map(([k, v]) => [k, v.default]));
  buildHparams(spec);
  wire();
  await loadDataset(spec.targets === 'binary' ? 'two_clouds' : 'blobs');
  $('dataset-select').value = S.datasetName;
}

function wire() {
  const geo = $('geo');
  geo.addEventListener('pointerdown', onDown);
  geo.addEventListener('pointermove', onMove);
  geo.addEventListener('pointerup', onUp);
  geo.addEventListener('pointercancel', onUp);
  geo.addEventListener('keydown', onKey);
  geo.addEventListener('focus', drawGeometric);
  geo.addEventListener('blur', drawGeometric);
  document.querySelectorAll('input[name=tool]').forEach((r) => r.addEventListener('change', () => { S.tool = r.value; }));
  $('dataset-select').addEventListener('change', () => loadDataset($('dataset-select').value));
  $('features').addEventListener('change', () => { S.features = $('features').checked && S.caseName ? S.caseName : 'none'; reinit(); });
  $('loss-select').addEventListener('change', onLossChange);
  $('penalty-select').addEventListener('change', () => { S.penalty = $('penalty-select').value; problemChanged(); evaluate(); });
  $('reg').addEventListener('input', () => { if ($('reg').value !== '') { S.reg = +$('reg').value; problemChanged(); evaluate(); } });
  $('params-table').addEventListener('input', (e) => {
    const inp = e.target;
    if (inp.value === '' || !isFinite(+inp.value)) return;
    const r = +inp.dataset.r, k = inp.dataset.k;
    if (k === 'b') S.model.b[r] = +inp.value; else S.model.W[r][+k] = +inp.value;
    evaluate();
  });
  ['opt-method', 'opt-grad', 'schedule'].forEach((id) => $(id).addEventListener('change', resetOpt));
  $('step').addEventListener('click', () => doStep(1));
  $('run').addEventListener('click', () => {
    S.running = !S.running; $('run').textContent = S.running ? 'Pause' : 'Run';
    if (S.running) runLoop();
  });
  $('reset').addEventListener('click', () => { S.running = false; $('run').textContent = 'Run'; reinit(Math.floor(Math.random() * 1000)); });
  $('surface-draw').addEventListener('click', drawSurfaceRequest);
  $('search-run').addEventListener('click', runSearch);
  $('search-table').addEventListener('click', (e) => {
    const i = e.target.dataset && e.target.dataset.i;
    if (i === undefined || !S.search) return;
    if (S.search.problem !== S.problem) { setStatus('these weights were found for other data or another objective: race again', true); return; }
    S.model = S.search.methods[+i].model; resetOpt(); evaluate();
  });
}

async function runSearch() {
  const button = $('search-run');
  button.disabled = true;
  setStatus('racing the search methods (the first race of a budget compiles its programs)…');
  try {
    const payload = body({budget: Math.round(+$('budget').value), optimizer: optimizerBody()});
    payload.optimizer.state = null;
    const problem = S.problem;
    const [j, ms] = await api('search', payload);
    if (problem !== S.problem) {  // the data or the loss changed while it ran: its table is another problem's
      setStatus('the data or the objective changed during the race: race again', true);
      return;
    }
    S.search = {...j, problem};
    drawSearch();
    setStatus(`search: ${(ms / 1000).toFixed(1)} s`);
  } catch (e) { setStatus(e.message, true); } finally { button.disabled = false; }
}

start().catch((e) => setStatus(e.message, true));
