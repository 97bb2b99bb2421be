// The observer's web console: the service map (Cytoscape.js), the flows behind an edge and
// why they were judged so, live violations, the policies selecting a workload, suggested
// policies. Read-only; everything comes from the JSON API of docs/api.md ("Web console").
// Names, labels and YAML come from the cluster: text goes into the DOM only as text.
'use strict';
(function () {
  const VERDICT_COLORS = {
    denied: '#d62728', undefined: '#ff7f0e', allowed: '#2ca02c',
    not_isolated: '#7f8fa6', none: '#bbbbbb',
  };
  const VERDICTS = Object.keys(VERDICT_COLORS);
  const TABS = ['map', 'violations', 'policies', 'suggestions'];
  const MAX_EDGES = 2000;          // the most the page ever asks to draw
  const AUTO_NAMESPACE_ABOVE = 300; // workloads above which "auto" draws namespaces
  const COSE_MAX_NODES = 150;       // above this, blocks in rows (see blockPositions)
  const COSE_MAX_BLOCKS = 40;       // cose is O(blocks²) per iteration: above this, rings
  const REFRESH_MS = 10000;
  const LABELS_ALWAYS = 300;        // nodes or edges above which labels follow the zoom
  const LABEL_ZOOM = 0.8;           // 9-10 px labels are legible from about here

  const $ = (id) => document.getElementById(id);

  // Builds an element; strings become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const clear = (node) => { node.replaceChildren(); return node; };
  // Element.append writes null as "null": this skips absent parts.
  const put = (node, ...children) => {
    node.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
    return node;
  };
  const nextFrame = () => new Promise((resolve) => {
    // A background tab may never run the frame: the timeout keeps loads from hanging.
    let done = false;
    const go = () => { if (!done) { done = true; resolve(); } };
    requestAnimationFrame(go);
    setTimeout(go, 250);
  });

  // ---- formatting ----
  const NUM = new Intl.NumberFormat('en-US');
  const fmtNum = (n) => (typeof n === 'number' ? NUM.format(n) : String(n ?? '–'));
  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : String(n)) + ' ' + units[i];
  }
  // RFC 3339 strings (records) or {seconds, nanos} (protobuf timestamps in suggestions).
  function fmtTime(t) {
    if (t == null || t === '') return '–';
    if (typeof t === 'object' && 'seconds' in t) t = new Date(Number(t.seconds) * 1000).toISOString();
    return String(t).replace('T', ' ').replace(/\.\d+/, '').replace(/Z$/, ' UTC');
  }
  const fmtAddr = (ip, port) => (ip == null ? '' : (String(ip).includes(':') ? `[${ip}]` : ip) + (port != null ? `:${port}` : ''));
  function endpointName(ep) {
    if (!ep) return '?';
    if (ep.namespace && ep.pod) return `${ep.namespace}/${ep.pod}`;
    if (ep.node) return `node ${ep.node}`;
    if (ep.external) return 'external';
    return '';
  }
  const endpointText = (ep) => [endpointName(ep), fmtAddr(ep && ep.ip, ep && ep.port)].filter(Boolean).join(' ');
  const protoPort = (protocol, port) => (port ? `${protocol}/${port}` : String(protocol ?? ''));
  // Verdicts in words: "undefined" alone would read as a missing value.
  const VERDICT_TEXT = { denied: 'denied', undefined: 'undefined (host network)', allowed: 'allowed',
    not_isolated: 'not isolated', none: 'not judged' };
  const verdictBadge = (v) => {
    const known = Object.prototype.hasOwnProperty.call(VERDICT_TEXT, v) ? v : 'none';
    return el('span', { class: `verdict verdict-${known}`, text: v == null ? VERDICT_TEXT.none : (VERDICT_TEXT[v] || String(v)) });
  };
  function connectionsText(c) {
    if (typeof c === 'number') return `${fmtNum(c)} connections`;
    return Object.entries(c || {}).map(([v, n]) => `${fmtNum(n)} ${VERDICT_TEXT[v] || v}`).join(', ');
  }
  const connectionsTotal = (c) => (typeof c === 'number' ? c : Object.values(c || {}).reduce((a, b) => a + (Number(b) || 0), 0));
  // ---- the API ----
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      for (const x of Array.isArray(v) ? v : [v]) if (x != null && x !== '') q.append(k, String(x));
    }
    const s = q.toString();
    return s ? '?' + s : '';
  }
  // The server's message for a failed request: a JSON {error|message} or the body's text.
  function serverMessage(text) {
    try {
      const j = JSON.parse(text);
      if (j && typeof j === 'object') return String(j.error || j.message || text);
    } catch (_) { /* plain text */ }
    return text.trim();
  }
  async function api(path, params) {
    const url = 'api/' + path + query(params);
    let resp;
    try {
      resp = await fetch(url, { headers: { Accept: 'application/json' } });
    } catch (e) {
      throw showError(`/api/${path}: ${e.message}`);
    }
    if (!resp.ok) {
      const msg = serverMessage(await resp.text().catch(() => '')) || resp.statusText;
      throw showError(`/api/${path}: ${resp.status} ${msg}`, resp.status);
    }
    return resp.json();
  }
  function showError(message, status) {
    $('error-text').textContent = message;
    $('error').hidden = false;
    const e = new Error(message);
    e.status = status;
    e.shown = true;
    return e;
  }
  const splitList = (s) => String(s || '').split(',').map((x) => x.trim()).filter(Boolean);

  // ---- state and the test hooks ----
  const state = {
    tab: 'map',
    drillNs: null,        // the namespace opened from the namespace view
    extra: {},            // parameters given to loadMap(params), kept for refreshes
    mapKey: null,         // level and namespace of the drawn elements: a change redraws
    drawn: null,          // {level, params} of the map on screen (for /api/edge)
    autoNamespaces: false,// the "auto" map was too big for workloads
    selected: null,       // {id, kind, label, namespace} of the tapped node
    labels: { nodes: true, edges: true }, // drawn with labels (see updateLabels)
    mapSide: null,        // the side panel the map tab shows
    overlay: null,        // the policy_view answer drawn over the map
    policyFor: null,
    suggestionsFor: null,
  };
  const hooks = {
    cy: null, ready: false, lastMapMs: null, firstRenderMs: null,
    timings: {}, // the last map load's phases in ms: fetch, elements, add, layout, frame
    edgePosition, nodePosition, loadMap,
  };
  window.observerConsole = hooks;

  // ---- the map ----
  const STYLE = [
    { selector: 'node', style: {
      label: 'data(short)', 'font-size': 10, color: '#222', 'text-valign': 'bottom', 'text-margin-y': 3,
      'min-zoomed-font-size': 7,
      width: 20, height: 20, 'background-color': '#4e79a7' } },
    { selector: 'node[kind = "namespace"]', style: { shape: 'round-rectangle', width: 36, height: 36, 'background-color': '#6a9fd4', 'font-size': 16, 'min-zoomed-font-size': 4 } },
    { selector: 'node[kind = "node"]', style: { shape: 'hexagon', 'background-color': '#5f6b7a' } },
    { selector: 'node[kind = "external"]', style: { shape: 'diamond', 'background-color': '#b07aa1' } },
    { selector: 'node[kind = "unknown"]', style: { shape: 'diamond', 'background-color': '#9a9a9a' } },
    { selector: 'node[kind = "group"]', style: {
      shape: 'round-rectangle', 'background-color': '#eef2f7', 'border-color': '#c5d0dc', 'border-width': 1,
      'text-valign': 'top', 'text-halign': 'center', 'font-size': 13, 'font-weight': 'bold', color: '#445',
      'text-margin-y': -2, padding: 14, 'min-zoomed-font-size': 5 } },
    { selector: 'node:selected', style: { 'border-width': 3, 'border-color': '#111' } },
    { selector: 'edge', style: {
      width: 'data(width)', 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'arrow-scale': 0.8,
      'line-color': '#bbbbbb', 'target-arrow-color': '#bbbbbb', label: 'data(label)', 'font-size': 9,
      'min-zoomed-font-size': 8, 'text-rotation': 'autorotate', 'text-background-color': '#ffffff',
      'text-background-opacity': 0.85, 'text-background-padding': 1, 'text-events': 'no',
      'overlay-padding': 6 } },
    ...VERDICTS.map((v) => ({ selector: `edge[verdict = "${v}"]`, style: { 'line-color': VERDICT_COLORS[v], 'target-arrow-color': VERDICT_COLORS[v] } })),
    { selector: 'edge:selected', style: { 'overlay-color': '#000', 'overlay-opacity': 0.18 } },
    // Labels too small to read cost a text measurement each: a big map drops them (below).
    { selector: '.nolabel', style: { label: '' } },
    // The policy overlay: what policy allows around one workload, against what was seen.
    { selector: '.faded', style: { opacity: 0.15 } },
    { selector: 'edge.policy-unused', style: { 'line-style': 'dashed', 'line-dash-pattern': [6, 4], 'line-color': '#2ca02c', 'target-arrow-color': '#2ca02c', width: 2, opacity: 1 } },
    { selector: 'edge.policy-used-allowed', style: { 'line-style': 'solid', 'line-color': '#2ca02c', 'target-arrow-color': '#2ca02c', width: 4, opacity: 1 } },
    { selector: 'edge.policy-used-denied', style: { 'line-style': 'solid', 'line-color': '#d62728', 'target-arrow-color': '#d62728', width: 4, opacity: 1 } },
    { selector: 'node.overlay', style: { 'border-width': 2, 'border-style': 'dashed', 'border-color': '#2ca02c' } },
  ];

  function initMap() {
    hooks.cy = window.cytoscape({
      container: $('cy'), style: STYLE, elements: [],
      boxSelectionEnabled: false, selectionType: 'single', minZoom: 0.02, maxZoom: 4,
      motionBlur: false,
    });
    const cy = hooks.cy;
    cy.on('tap', 'edge', (ev) => views.showEdge(ev.target));
    cy.on('tap', 'node', (ev) => { if (ev.target.data('kind') !== 'group') views.selectNode(ev.target); });
    let zoomTimer = null;
    cy.on('zoom', () => { clearTimeout(zoomTimer); zoomTimer = setTimeout(updateLabels, 150); });
    cy.on('dbltap', 'node[kind = "namespace"]', (ev) => openNamespace(ev.target.data('namespace') || ev.target.id().replace(/^ns:/, '')));
  }

  function filterParams() {
    const p = {};
    const ns = splitList($('f-namespace').value);
    if (ns.length) p.namespace = ns;
    const wl = splitList($('f-workload').value);
    if (wl.length) p.workload = wl;
    const verdicts = VERDICTS.filter((v) => $('f-verdict-' + v).checked);
    // None ticked reads as "no filter" rather than an empty map nobody asked for.
    if (verdicts.length && verdicts.length < VERDICTS.length) p.verdict = verdicts;
    const proto = splitList($('f-protocol').value);
    if (proto.length) p.protocol = proto;
    if ($('f-window').value) p.window = $('f-window').value;
    return p;
  }

  // One map load at a time: a load asked for during another runs after it.
  let mapChain = Promise.resolve();
  function loadMap(params) {
    if (params !== undefined) {
      state.extra = Object.assign({}, params || {});
      // Asking for a level or namespaces replaces the namespace opened by double-click.
      if (state.extra.level || state.extra.namespace) state.drillNs = null;
    }
    hooks.ready = false; // at once: a caller polling `ready` must not see the last map's
    const run = mapChain.then(doLoadMap);
    mapChain = run.catch(() => {});
    return run;
  }

  async function doLoadMap() {
    hooks.ready = false;
    const t0 = performance.now();
    try {
      const base = Object.assign(filterParams(), state.extra);
      if (state.drillNs && !state.extra.namespace) base.namespace = [state.drillNs];
      base.max_edges = Math.min(Number(base.max_edges) || MAX_EDGES, MAX_EDGES);
      let level = base.level || (state.drillNs ? 'workload' : $('f-level').value);
      let map;
      if (level === 'auto') {
        // The namespace-level answer counts the workloads too: a big cluster's workload map
        // is never fetched just to be thrown away, and a small one costs a second, small call.
        map = await api('map', Object.assign({}, base, { level: 'namespace' }));
        state.workloads = map.workloads;
        state.autoNamespaces = map.workloads > AUTO_NAMESPACE_ABOVE;
        level = state.autoNamespaces ? 'namespace' : 'workload';
        if (level === 'workload') map = await api('map', Object.assign({}, base, { level }));
      } else {
        map = await api('map', Object.assign({}, base, { level }));
      }
      const params = Object.assign({}, base, { level });
      hooks.timings = { fetch: performance.now() - t0 };
      await draw(map, level, params);
      hooks.lastMapMs = performance.now() - t0;
      if (hooks.firstRenderMs == null) {
        hooks.firstRenderMs = performance.now();
        console.log(`observer console: first map rendered at ${hooks.firstRenderMs.toFixed(0)} ms`);
      }
      return { nodes: map.nodes.length, edges: map.edges.length };
    } catch (e) {
      if (!e.shown) showError(`map: ${e.message}`);
      console.error(e);
      return { error: e.message };
    } finally {
      hooks.ready = true;
      $('map-back').hidden = !state.drillNs;
    }
  }

  // The API's map as Cytoscape elements; workloads go into a group per namespace.
  function toElements(map, grouped) {
    const groups = new Map();
    const nodes = [];
    const ids = new Set();
    for (const n of map.nodes || []) {
      const d = { id: n.id, kind: n.kind, label: n.label || n.id, namespace: n.namespace ?? null };
      d.short = d.label.length > 28 ? d.label.slice(0, 27) + '…' : d.label;
      if (n.kind === 'namespace' && !d.namespace) d.namespace = n.id.replace(/^ns:/, '');
      if (grouped && n.kind === 'workload' && n.namespace) {
        d.parent = 'group:' + n.namespace;
        groups.set(d.parent, n.namespace);
      }
      ids.add(n.id);
      nodes.push({ group: 'nodes', data: d });
    }
    const groupEls = [...groups].map(([id, ns]) => ({ group: 'nodes', data: { id, kind: 'group', label: ns, short: ns, namespace: ns } }));
    const maxLog = Math.log1p((map.edges || []).reduce((m, e) => Math.max(m, e.bytes || 0), 1));
    const edges = [];
    let orphans = 0;
    for (const e of map.edges || []) {
      if (!ids.has(e.source) || !ids.has(e.target)) { orphans++; continue; }
      edges.push({ group: 'edges', data: {
        id: e.id || [e.source, e.target, e.protocol, e.port].join('|'),
        source: e.source, target: e.target, verdict: e.verdict || 'none', protocol: e.protocol, port: e.port,
        bytes: e.bytes || 0, packets: e.packets || 0, connections: e.connections,
        total: connectionsTotal(e.connections), denied_by: e.denied_by || null,
        label: protoPort(e.protocol, e.port),
        // Log scale, 1 to 8 px, relative to the heaviest edge drawn.
        width: 1 + 7 * (maxLog > 0 ? Math.log1p(e.bytes || 0) / maxLog : 0),
      } });
    }
    return { groups: groupEls, nodes, edges, orphans };
  }

  async function draw(map, level, params) {
    const cy = hooks.cy;
    const tm = hooks.timings;
    let t = performance.now();
    const lap = (name) => { const now = performance.now(); tm[name] = now - t; t = now; };
    const els = toElements(map, level === 'workload');
    lap('elements');
    const key = level + '|' + (state.drillNs || '');
    const fresh = key !== state.mapKey || cy.elements().empty();
    state.mapKey = key;
    state.drawn = { level, params };
    views.removeOverlay();
    let nodesChanged = fresh;
    cy.batch(() => {
      if (fresh) {
        cy.elements().remove();
        // Many nodes or edges start without labels: the fitted zoom is too small to read them.
        state.bigNodes = els.nodes.length > LABELS_ALWAYS;
        state.bigEdges = els.edges.length > LABELS_ALWAYS;
        state.labels = { nodes: !state.bigNodes, edges: !state.bigEdges };
        if (state.bigNodes) for (const x of els.nodes) x.classes = 'nolabel';
        if (state.bigEdges) for (const x of els.edges) x.classes = 'nolabel';
        cy.add([...els.groups, ...els.nodes, ...els.edges]);
      } else {
        nodesChanged = patch(els);
      }
    });
    lap('add');
    const count = els.nodes.length;
    if (nodesChanged) layout(count, fresh || count <= COSE_MAX_NODES);
    updateLabels();
    lap('layout');
    if (state.selected && cy.getElementById(state.selected.id).nonempty()) cy.getElementById(state.selected.id).select();
    if (state.overlay) views.drawOverlay(state.overlay);
    const nsList = $('namespace-list');
    const names = [...new Set((map.nodes || []).map((n) => n.namespace).filter(Boolean))].sort();
    nsList.replaceChildren(...names.map((n) => el('option', { value: n })));
    $('map-count-nodes').textContent = fmtNum(count);
    $('map-count-edges').textContent = fmtNum(els.edges.length);
    $('map-count-left-out').textContent = fmtNum((map.edges_left_out || 0) + els.orphans);
    $('map-note').textContent = level === 'namespace'
      ? ` · namespaces${state.autoNamespaces ? ` (${fmtNum(state.workloads)} workloads)` : ''}: double-click one to open it`
      : (state.drillNs ? ` · namespace ${state.drillNs}` : '');
    await nextFrame();
    lap('frame');
  }

  // On a big map, labels exist only at a zoom where they are legible (Cytoscape would hide
  // them below min-zoomed-font-size anyway, after measuring them).
  function updateLabels() {
    const cy = hooks.cy;
    const zoomed = cy.zoom() >= LABEL_ZOOM;
    cy.batch(() => {
      for (const [which, big, eles] of [['nodes', state.bigNodes, () => cy.nodes('[kind != "group"]')], ['edges', state.bigEdges, () => cy.edges()]]) {
        const on = !big || zoomed;
        if (on === state.labels[which]) continue;
        state.labels[which] = on;
        eles().toggleClass('nolabel', !on);
      }
    });
  }

  // Refresh in place: keeps the elements (and positions) still there; true when the set
  // of nodes changed (then a layout is needed).
  function patch(els) {
    const cy = hooks.cy;
    const all = [...els.groups, ...els.nodes, ...els.edges];
    const want = new Set(all.map((x) => x.data.id));
    const gone = cy.elements().filter((e) => !want.has(e.id()));
    let changed = gone.nodes().nonempty();
    gone.remove();
    const add = [];
    for (const x of all) {
      const ex = cy.getElementById(x.data.id);
      if (ex.nonempty()) {
        const { id, source, target, parent, ...rest } = x.data; // fixed for an element
        ex.data(rest);
      } else {
        add.push(x);
        if (x.group === 'nodes') changed = true;
      }
    }
    if (add.length) {
      for (const x of add) {
        if (x.data.kind !== 'group' && !state.labels[x.group]) x.classes = 'nolabel';
      }
      cy.add(add);
    }
    return changed;
  }

  // Layout in two steps, both deterministic: each namespace's workloads as a compact grid
  // block (every other node a block of its own), then the blocks placed, by cose on the
  // small graph of blocks when there are few nodes (cose on compound nodes strands a group's
  // unconnected members), else packed in rows (linear time: a big map lays out at once).
  const SX = 130, SY = 85;
  function blockPositions(nodes, useCose) {
    const blocks = new Map();
    const blockOf = new Map();
    nodes.forEach((n) => {
      const key = n.data('parent') ? 'g:' + n.data('parent') : (n.data('kind') === 'workload' ? 'w:' : 'x:') + n.id();
      if (!blocks.has(key)) blocks.set(key, []);
      blocks.get(key).push(n);
      blockOf.set(n.id(), key);
    });
    const byLabel = (a, b) => (a.data('label') < b.data('label') ? -1 : a.data('label') > b.data('label') ? 1 : 0);
    // The namespace opened from the namespace view comes first, the peers after it.
    const first = 'g:group:' + state.drillNs;
    const keys = [...blocks.keys()].sort((a, b) => (b === first) - (a === first) || (a < b ? -1 : a > b ? 1 : 0));
    const dims = keys.map((key) => {
      const list = blocks.get(key).sort(byLabel);
      const cols = Math.ceil(Math.sqrt(list.length * SY / SX * 1.5));
      const rows = Math.ceil(list.length / cols);
      return { key, list, cols, rows, w: cols * SX, h: rows * SY, x: 0, y: 0 };
    });
    // Start: blocks packed in rows of about the width that makes the whole square-ish.
    const area = dims.reduce((a, b) => a + (b.w + SX) * (b.h + SY), 0);
    const rowWidth = Math.max(4 * SX, Math.sqrt(area) * 1.3);
    let x = 0, y = 0, rowH = 0;
    for (const b of dims) {
      if (x > 0 && x + b.w > rowWidth) { x = 0; y += rowH + SY; rowH = 0; }
      b.x = x + b.w / 2; b.y = y + b.h / 2;
      x += b.w + SX;
      rowH = Math.max(rowH, b.h);
    }
    const links = new Set();
    if (useCose && dims.length > 1) {
      nodes.connectedEdges().forEach((e) => {
        const s = blockOf.get(e.data('source')), t = blockOf.get(e.data('target'));
        if (s && t && s !== t) links.add(s < t ? s + '\n' + t : t + '\n' + s);
      });
    }
    if (links.size > 3 * dims.length || (links.size && dims.length > COSE_MAX_BLOCKS)) {
      // Dense (every namespace talks to most others: forces only make a heap) or too many
      // blocks for cose's time: rings by degree, the busiest in the middle.
      const degree = new Map(dims.map((b) => [b.key, 0]));
      for (const l of links) for (const k of l.split('\n')) degree.set(k, degree.get(k) + 1);
      const order = [...dims].sort((a, b) => degree.get(b.key) - degree.get(a.key) || (a.key < b.key ? -1 : 1));
      const cell = Math.max(...dims.map((b) => Math.max(b.w, b.h))) + SY;
      let i = 0;
      for (let ring = 0; i < order.length; ring++) {
        const cap = ring === 0 ? 1 : Math.floor(2 * Math.PI * ring);
        const n = Math.min(cap, order.length - i);
        for (let j = 0; j < n; j++, i++) {
          const a = (2 * Math.PI * j) / n + ring * 0.5;
          order[i].x = ring * cell * Math.cos(a);
          order[i].y = ring * cell * Math.sin(a);
        }
      }
    } else if (links.size) {
      const g = window.cytoscape({
        headless: true, styleEnabled: true,
        style: [{ selector: 'node', style: { width: 'data(w)', height: 'data(h)' } }],
        elements: [
          ...dims.map((b) => ({ data: { id: b.key, w: b.w, h: b.h }, position: { x: b.x, y: b.y } })),
          ...[...links].map((l, i) => { const [s, t] = l.split('\n'); return { data: { id: 'l' + i, source: s, target: t } }; }),
        ],
      });
      // Iterations scaled to the work per iteration (pairs of blocks, links), cooling to
      // the end within them: a bounded time whatever the map.
      const numIter = Math.round(Math.max(100, Math.min(500, 4e5 / (dims.length * dims.length + 4 * links.size))));
      g.layout({ name: 'cose', animate: false, randomize: false, fit: false, idealEdgeLength: () => 90,
        nodeRepulsion: () => 400000, nodeOverlap: 40, gravity: 0.6, componentSpacing: 120, numIter,
        initialTemp: 1000, minTemp: 1, coolingFactor: Math.pow(1 / 1000, 1 / numIter) }).run();
      for (const b of dims) { const p = g.getElementById(b.key).position(); b.x = p.x; b.y = p.y; }
      g.destroy();
    }
    const pos = {};
    for (const b of dims) {
      const x0 = b.x - b.w / 2 + SX / 2, y0 = b.y - b.h / 2 + SY / 2;
      b.list.forEach((n, i) => { pos[n.id()] = { x: x0 + (i % b.cols) * SX, y: y0 + Math.floor(i / b.cols) * SY }; });
    }
    return pos;
  }

  function layout(count, fit) {
    const cy = hooks.cy;
    const nodes = cy.nodes('[kind != "group"]');
    const pos = blockPositions(nodes, count <= COSE_MAX_NODES);
    cy.batch(() => nodes.forEach((n) => { n.position(pos[n.id()]); }));
    if (fit) fitPositions(Object.values(pos));
  }

  // cy.fit() measures every edge and label first (most of a big map's first render): the
  // view is fitted to the node positions instead, with a margin for sizes and labels.
  function fitPositions(points) {
    const cy = hooks.cy;
    if (!points.length || !cy.width()) return;
    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    for (const p of points) {
      x1 = Math.min(x1, p.x); y1 = Math.min(y1, p.y); x2 = Math.max(x2, p.x); y2 = Math.max(y2, p.y);
    }
    const margin = 60, pad = 20;
    x1 -= margin; y1 -= margin; x2 += margin; y2 += margin;
    const zoom = Math.max(cy.minZoom(), Math.min(1.5, (cy.width() - 2 * pad) / (x2 - x1), (cy.height() - 2 * pad) / (y2 - y1)));
    cy.viewport({ zoom, pan: { x: cy.width() / 2 - zoom * (x1 + x2) / 2, y: cy.height() / 2 - zoom * (y1 + y2) / 2 } });
  }

  function openNamespace(ns) {
    state.drillNs = ns;
    state.extra = {};
    state.mapSide = null;
    $('map-back').hidden = false;
    if (state.tab === 'map') showSide(null);
    loadMap();
  }

  // Viewport coordinates of a model position, for a test's real pointer click: whole
  // pixels, as WebDriver's pointer actions take them (hits() checks the rounded point).
  function clientPoint(m) {
    const cy = hooks.cy;
    const r = cy.container().getBoundingClientRect();
    const z = cy.zoom(), p = cy.pan();
    return { x: Math.round(r.left + m.x * z + p.x), y: Math.round(r.top + m.y * z + p.y) };
  }
  // The model position a click at clientPoint(m) lands on.
  function rounded(m) {
    const cy = hooks.cy;
    const r = cy.container().getBoundingClientRect();
    const c = clientPoint(m), z = cy.zoom(), p = cy.pan();
    return { x: (c.x - r.left - p.x) / z, y: (c.y - r.top - p.y) / z };
  }
  function inView(ele, m) {
    const cy = hooks.cy, z = cy.zoom(), p = cy.pan();
    const x = m.x * z + p.x, y = m.y * z + p.y;
    if (x < 5 || y < 5 || x > cy.width() - 5 || y > cy.height() - 5) cy.center(ele);
  }
  // Is `ele` what a click at model point m lands on? (The renderer's own hit test.)
  function hits(ele, m) {
    try {
      const top = hooks.cy.renderer().findNearestElement(m.x, m.y, true, false);
      return !top || top.same(ele);
    } catch (_) { return true; }
  }
  function nodePosition(id) {
    const n = hooks.cy.getElementById(id);
    if (n.empty()) return null;
    inView(n, n.position());
    return clientPoint(n.position());
  }
  // The midpoint, or when a node or another edge covers it, the nearest point along the
  // edge (a quadratic curve through its endpoints and midpoint) that a click reaches. On a
  // dense map (a click's tolerance is in screen pixels) it zooms in on the edge first.
  function edgePosition(id) {
    const cy = hooks.cy;
    const e = cy.getElementById(id);
    if (e.empty() || !e.isEdge()) return null;
    inView(e, e.midpoint());
    for (const zoom of [null, 1, 2, 4]) {
      const mid = e.midpoint();
      if (zoom != null) {
        if (zoom <= cy.zoom()) continue;
        cy.viewport({ zoom, pan: { x: cy.width() / 2 - zoom * mid.x, y: cy.height() / 2 - zoom * mid.y } });
      }
      const s = e.sourceEndpoint(), t = e.targetEndpoint();
      const c = { x: 2 * mid.x - (s.x + t.x) / 2, y: 2 * mid.y - (s.y + t.y) / 2 };
      const at = (u) => ({
        x: (1 - u) * (1 - u) * s.x + 2 * u * (1 - u) * c.x + u * u * t.x,
        y: (1 - u) * (1 - u) * s.y + 2 * u * (1 - u) * c.y + u * u * t.y,
      });
      for (let k = 0; k <= 16; k++) {
        const m = at(0.5 + (k % 2 ? 1 : -1) * Math.ceil(k / 2) * 0.025);
        if (visible(m) && hits(e, rounded(m))) return clientPoint(m);
      }
    }
    return clientPoint(e.midpoint());
  }
  function visible(m) {
    const cy = hooks.cy, z = cy.zoom(), p = cy.pan();
    const x = m.x * z + p.x, y = m.y * z + p.y;
    return x > 2 && y > 2 && x < cy.width() - 2 && y < cy.height() - 2;
  }

  // ---- side panels ----
  function showSide(which) {
    for (const id of ['node-detail', 'edge-detail', 'policy-view']) $(id).hidden = id !== which;
    $('side-hint').hidden = !!which;
  }

  function setTab(tab) {
    if (!TABS.includes(tab)) tab = 'map';
    state.tab = tab;
    document.body.dataset.tab = tab;
    for (const t of TABS) {
      $('tab-' + t).setAttribute('aria-selected', String(t === tab));
      $('tab-' + t).classList.toggle('active', t === tab);
    }
    $('violations').hidden = tab !== 'violations';
    $('suggestions').hidden = tab !== 'suggestions';
    if (tab === 'policies') {
      showSide('policy-view');
      const sel = state.selected;
      if (sel && sel.kind === 'workload' && state.policyFor !== sel.id) views.loadPolicyView(sel.id);
    } else if (tab === 'map') {
      showSide(state.mapSide);
    }
    if (tab === 'suggestions' && state.suggestionsFor !== views.suggestionsKey()) views.loadSuggestions();
  }

  const closeButton = (onclick) => el('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '×', onclick });

  // ---- start ----
  function readUrl() {
    const q = new URLSearchParams(location.search);
    const level = q.get('level');
    if (level === 'workload' || level === 'namespace') $('f-level').value = level;
    if (q.getAll('namespace').length) $('f-namespace').value = q.getAll('namespace').join(',');
    const win = q.get('window');
    if (win) {
      const sel = $('f-window');
      if (![...sel.options].some((o) => o.value === win)) sel.append(el('option', { value: win, text: `${win} s` }));
      sel.value = win;
    }
    return q.get('tab') || 'map';
  }

  function wire() {
    for (const t of TABS) $('tab-' + t).addEventListener('click', () => setTab(t));
    $('toolbar').addEventListener('submit', (ev) => { ev.preventDefault(); state.extra = {}; loadMap(); });
    for (const id of ['f-level', 'f-window', ...VERDICTS.map((v) => 'f-verdict-' + v)]) {
      $(id).addEventListener('change', () => {
        if (id === 'f-level') state.drillNs = null;
        state.extra = {};
        loadMap();
      });
    }
    $('map-back').addEventListener('click', () => {
      state.drillNs = null;
      state.extra = {};
      $('map-back').hidden = true;
      loadMap();
    });
    $('map-fit').addEventListener('click', () => fitPositions(hooks.cy.nodes('[kind != "group"]').map((n) => n.position())));
    $('refresh').addEventListener('click', () => {
      views.refreshStatus();
      loadMap();
      if (state.tab === 'suggestions') views.loadSuggestions();
    });
    $('error-close').addEventListener('click', () => { $('error').hidden = true; });
    $('policy-yaml-close').addEventListener('click', () => { $('policy-yaml').hidden = true; });
    views.wireViews();
    setInterval(() => {
      if (!$('auto-refresh').checked || document.hidden) return;
      views.refreshStatus();
      if (hooks.ready) loadMap();
    }, REFRESH_MS);
    // Cytoscape caches the container's size and place (clicks are mapped through them):
    // whatever moves or resizes it (the window, the error bar, a wrapping toolbar) tells it.
    const resize = () => hooks.cy && hooks.cy.resize();
    window.addEventListener('resize', resize);
    if (window.ResizeObserver) new ResizeObserver(resize).observe($('cy'));
  }

  // What views.js (edge detail, violations, policy viewer, suggestions) uses from here.
  let views = null;
  function start() {
    if (!window.observerViews || !window.cytoscape) {
      showError('The console did not load completely (vendor/cytoscape.min.js, views.js, app.js): reload the page.');
      return;
    }
    views = window.observerViews({
      $, el, clear, put, api, showError, splitList, state, hooks, setTab, showSide, loadMap, openNamespace,
      fmtNum, fmtBytes, fmtTime, endpointText, protoPort, verdictBadge, connectionsText, closeButton,
    });
    hooks.lineDiff = views.lineDiff;
    hooks.violations = views.violations; // {cursor, paused, received, lost}
    initMap();
    const tab = readUrl();
    wire();
    views.renderPolicyHint();
    setTab(tab);
    views.refreshStatus();
    loadMap();
    views.startViolations();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
