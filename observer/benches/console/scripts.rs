//! The JavaScript the page part runs in headless Chromium (waits, timed loads, long
//! animation frames), and the names of what it reports.

/// Waits for the page's first map: what it took, by the page's clock (null until then).
/// `timings` is the page's own account of that load (`observerConsole.timings`: fetch,
/// elements, add, layout, frame); `draws` the canvas renderer's counters so far.
pub(crate) const FIRST_RENDER: &str = r#"
const oc = window.observerConsole;
if (!oc || oc.firstRenderMs == null) return null;
const nav = performance.getEntriesByType('navigation')[0];
const maps = performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/api/map'))
  .map((e) => ({ url: e.name.replace(location.origin, ''), start: e.startTime,
                 headers: e.responseStart, end: e.responseEnd, bytes: e.encodedBodySize }));
const error = document.getElementById('error');
const r = oc.cy.renderer();
return { first: oc.firstRenderMs, lastMap: oc.lastMapMs, responseEnd: nav.responseEnd,
  domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, maps,
  timings: Object.assign({}, oc.timings || {}),
  draws: { count: r.redrawCount || 0, total: r.redrawTotalTime || 0, last: r.lastDrawTime || 0 },
  nodes: oc.cy.nodes('[kind != "group"]').length, edges: oc.cy.edges().length,
  error: error && !error.hidden ? document.getElementById('error-text').textContent : null };
"#;

/// Sums the long animation frames (Chromium's `long-animation-frame` entries: frames over
/// 50 ms, with the scripts that ran in them) from `from` on: their time, the scripts' time
/// by file, and the style, layout and paint after the scripts. Prepended to the scripts
/// below.
pub(crate) const LOAF: &str = r#"
const loafSum = (entries, from) => {
  const out = { frames: 0, duration: 0, render: 0, 'cytoscape.min.js': 0, 'app.js': 0, 'views.js': 0, other: 0 };
  for (const e of entries) {
    if (e.startTime + e.duration < from) continue;
    out.frames++;
    out.duration += e.duration;
    if (e.styleAndLayoutStart) out.render += e.startTime + e.duration - e.styleAndLayoutStart;
    for (const sc of e.scripts || []) {
      const file = (sc.sourceURL || '').split('/').pop().split('?')[0];
      out[file in out && file !== 'other' ? file : 'other'] += sc.duration;
    }
  }
  return out;
};
const loafWatch = (buffered) => {
  const entries = [];
  let po = null;
  try {
    po = new PerformanceObserver((list) => entries.push(...list.getEntries()));
    po.observe({ type: 'long-animation-frame', buffered });
  } catch (_) { po = null; }
  return { available: !!po, take: () => { if (po) { entries.push(...po.takeRecords()); po.disconnect(); } return entries; } };
};
"#;

/// Waits until the canvas has not been drawn for 500 ms (at most 10 s): when its last
/// draw ended (the renderer's `lastDrawTime`, on the page's clock), how many draws and
/// their time in all (the renderer's counters), and the long animation frames since the
/// navigation.
pub(crate) const SETTLE: &str = r#"
const done = arguments[arguments.length - 1];
const r = window.observerConsole.cy.renderer();
const loaf = loafWatch(true);
const start = performance.now();
let last = r.lastDrawTime || 0, since = start;
const tick = () => {
  const now = performance.now();
  if ((r.lastDrawTime || 0) !== last) { last = r.lastDrawTime || 0; since = now; }
  if (now - since >= 500 || now - start > 10000) {
    done({ last: r.lastDrawTime || 0, count: r.redrawCount || 0, total: r.redrawTotalTime || 0,
           loaf: loaf.available ? loafSum(loaf.take(), 0) : null });
  } else {
    setTimeout(tick, 20);
  }
};
tick();
"#;

/// The trivial page's load, by the page's clock (null until its load event ended).
pub(crate) const TRIVIAL_LOAD: &str = r#"
const nav = performance.getEntriesByType('navigation')[0];
return nav && nav.loadEventEnd > 0 ? { load: nav.loadEventEnd, responseEnd: nav.responseEnd } : null;
"#;

/// `observerConsole.loadMap(arguments[0])` timed, with its parts: the fetch (resource
/// timing), `Response.json()` (the body's arrival and parse, by wrapping it), the page's
/// own phases (`observerConsole.timings`), then the canvas until it settles (as
/// `SETTLE`) with the time Cytoscape spent before its draws (its `beforeRender`
/// callbacks, wrapped: styles, edge geometry, texture queues). Auto-refresh is turned off first so that no refresh runs before or inside
/// the measure.
pub(crate) const LOAD_MAP: &str = r#"
const done = arguments[arguments.length - 1];
const params = arguments[0];
const oc = window.observerConsole;
const r = oc.cy.renderer();
const refresh = document.getElementById('auto-refresh');
if (refresh) refresh.checked = false;
performance.clearResourceTimings();
let jsonMs = 0;
const json = Response.prototype.json;
Response.prototype.json = async function () {
  const t = performance.now();
  try { return await json.call(this); } finally { jsonMs += performance.now() - t; }
};
const before = { count: r.redrawCount || 0, total: r.redrawTotalTime || 0 };
// Cytoscape's work before each canvas draw (styles, edge geometry, texture queues).
let prep = 0;
const wrapped = (r.beforeRenderCallbacks || []).map((cb) => {
  const fn = cb.fn;
  cb.fn = function () {
    const t = performance.now();
    try { return fn.apply(this, arguments); } finally { prep += performance.now() - t; }
  };
  return [cb, fn];
});
const unwrap = () => { for (const [cb, fn] of wrapped) cb.fn = fn; };
const loaf = loafWatch(false);
const t0 = performance.now();
oc.loadMap(params).then((result) => {
  const total = performance.now() - t0;
  Response.prototype.json = json;
  const timings = Object.assign({}, oc.timings || {});
  const maps = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/map'))
    .map((e) => ({ start: e.startTime - t0, headers: e.responseStart - t0, end: e.responseEnd - t0,
                   bytes: e.encodedBodySize }));
  let last = r.lastDrawTime || 0, since = performance.now();
  const tick = () => {
    const now = performance.now();
    if ((r.lastDrawTime || 0) !== last) { last = r.lastDrawTime || 0; since = now; }
    if (now - since < 500 && now - t0 < 15000) { setTimeout(tick, 20); return; }
    unwrap();
    done({ total, prep, result, json: jsonMs, timings, maps,
           settled: (r.lastDrawTime || 0) - t0, draws: (r.redrawCount || 0) - before.count,
           drawTotal: (r.redrawTotalTime || 0) - before.total,
           loaf: loaf.available ? loafSum(loaf.take(), t0) : null,
           nodes: oc.cy.nodes('[kind != "group"]').length, edges: oc.cy.edges().length });
  };
  tick();
}, (e) => { Response.prototype.json = json; unwrap(); done({ error: String(e) }); });
"#;

/// Two animation frames, as a check that the headless page runs frames (the page waits
/// for one after drawing; without frames it would wait its 250 ms timeout).
pub(crate) const TWO_FRAMES: &str = r#"
const done = arguments[arguments.length - 1];
const t = performance.now();
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t)));
"#;

/// What the long-animation-frame sums name (`LOAF`).
pub(crate) const LOAF_KEYS: [&str; 7] = [
    "duration",
    "cytoscape.min.js",
    "app.js",
    "views.js",
    "other",
    "render",
    "frames",
];

/// The page's phases of a map load (`observerConsole.timings`), as the page names them.
pub(crate) const PHASES: [&str; 5] = ["fetch", "elements", "add", "layout", "frame"];
