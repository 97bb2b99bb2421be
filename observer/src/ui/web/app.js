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
  const COSE_MAX_NODES = 150;       // cose is O(n²) per iteration: above this, a grid
  const REFRESH_MS = 10000;

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
  const nextFrame = () => new Promise((resolve) => {
    // A background tab may never run the frame: the timeout keeps loads from hanging.
    let done = false;
    const go = () => { if (!done) { done = true; resolve(); } };
    requestAnimationFrame(go);
    setTimeout(go, 250);
  });

  // ---- formatting ----
  const fmtNum = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? '–'));
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
  const verdictBadge = (v) => el('span', { class: `verdict verdict-${v}`, text: String(v ?? 'none').replace('_', ' ') });
  function connectionsText(c) {
    if (typeof c === 'number') return `${fmtNum(c)} connections`;
    return Object.entries(c || {}).map(([v, n]) => `${fmtNum(n)} ${v.replace('_', ' ')}`).join(', ');
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
    autoNamespaces: false,// the last "auto" map was too big for workloads
    selected: null,       // {id, kind, label, namespace} of the tapped node
    mapSide: null,        // the side panel the map tab shows
    overlay: null,        // the policy_view answer drawn over the map
    policyFor: null,
    suggestionsFor: null,
    everFitted: false,
  };
  const hooks = {
    cy: null, ready: false, lastMapMs: null, firstRenderMs: null,
    edgePosition, nodePosition, loadMap,
  };
  window.observerConsole = hooks;

  // ---- the map ----
  const STYLE = [
    { selector: 'node', style: {
      label: 'data(label)', 'font-size': 10, color: '#222', 'text-valign': 'bottom', 'text-margin-y': 3,
      'text-wrap': 'ellipsis', 'text-max-width': 110, 'min-zoomed-font-size': 7,
      width: 20, height: 20, 'background-color': '#4e79a7' } },
    { selector: 'node[kind = "namespace"]', style: { shape: 'round-rectangle', width: 36, height: 36, 'background-color': '#6a9fd4', 'font-size': 12 } },
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
    cy.on('tap', 'node', (ev) => { if (ev.target.data('kind') !== 'group') selectNode(ev.target); });
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
    if (params !== undefined) state.extra = Object.assign({}, params || {});
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
        // `workloads` is counted at the workload level only (0 in a namespace map).
        if (state.autoNamespaces) {
          // Last time it was too big: a one-edge probe says whether it still is.
          const probe = await api('map', Object.assign({}, base, { level: 'workload', max_edges: 1 }));
          state.workloads = probe.workloads;
          state.autoNamespaces = probe.workloads > AUTO_NAMESPACE_ABOVE;
        }
        if (!state.autoNamespaces) {
          map = await api('map', Object.assign({}, base, { level: 'workload' }));
          state.workloads = map.workloads;
          state.autoNamespaces = map.workloads > AUTO_NAMESPACE_ABOVE;
        }
        level = state.autoNamespaces ? 'namespace' : 'workload';
        if (state.autoNamespaces) map = await api('map', Object.assign({}, base, { level }));
      } else {
        map = await api('map', Object.assign({}, base, { level }));
      }
      const params = Object.assign({}, base, { level });
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
      if (n.kind === 'namespace' && !d.namespace) d.namespace = n.id.replace(/^ns:/, '');
      if (grouped && n.kind === 'workload' && n.namespace) {
        d.parent = 'group:' + n.namespace;
        groups.set(d.parent, n.namespace);
      }
      ids.add(n.id);
      nodes.push({ group: 'nodes', data: d });
    }
    const groupEls = [...groups].map(([id, ns]) => ({ group: 'nodes', data: { id, kind: 'group', label: ns, namespace: ns } }));
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
    const els = toElements(map, level === 'workload');
    const key = level + '|' + (state.drillNs || '');
    const fresh = key !== state.mapKey || cy.elements().empty();
    state.mapKey = key;
    state.drawn = { level, params };
    views.removeOverlay();
    let nodesChanged = fresh;
    cy.batch(() => {
      if (fresh) {
        cy.elements().remove();
        cy.add([...els.groups, ...els.nodes, ...els.edges]);
      } else {
        nodesChanged = patch(els);
      }
    });
    const count = els.nodes.length;
    if (nodesChanged) await layout(count, fresh || count <= COSE_MAX_NODES);
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
      const added = cy.add(add);
      // Start new nodes next to a neighbour so cose (randomize off) has little to move.
      added.nodes().forEach((n) => {
        const nb = n.neighborhood('node').filter((m) => !added.contains(m));
        if (nb.nonempty()) n.position({ x: nb[0].position('x') + 40, y: nb[0].position('y') + 40 });
      });
    }
    return changed;
  }

  // Deterministic grid: a block per namespace (then nodes, outside peers), blocks packed
  // in rows. Linear time, so a big map lays out at once.
  function gridPositions(nodes) {
    const blocks = new Map();
    nodes.forEach((n) => {
      const kind = n.data('kind');
      const key = kind === 'workload' && n.data('namespace') ? '0:' + n.data('namespace') : '1:' + kind;
      if (!blocks.has(key)) blocks.set(key, []);
      blocks.get(key).push(n);
    });
    const SX = 120, SY = 70;
    const dims = [...blocks.keys()].sort().map((k) => {
      const list = blocks.get(k).sort((a, b) => (a.data('label') < b.data('label') ? -1 : 1));
      const cols = Math.ceil(Math.sqrt(list.length * SY / SX * 1.5));
      return { list, cols, rows: Math.ceil(list.length / cols) };
    });
    const area = dims.reduce((a, b) => a + (b.cols + 1) * SX * (b.rows + 1) * SY, 0);
    const rowWidth = Math.max(4 * SX, Math.sqrt(area) * 1.5);
    const pos = {};
    let x = 0, y = 0, rowH = 0;
    for (const b of dims) {
      const w = b.cols * SX, h = b.rows * SY;
      if (x > 0 && x + w > rowWidth) { x = 0; y += rowH + SY; rowH = 0; }
      b.list.forEach((n, i) => { pos[n.id()] = { x: x + (i % b.cols) * SX, y: y + Math.floor(i / b.cols) * SY }; });
      x += w + SX;
      rowH = Math.max(rowH, h);
    }
    return pos;
  }

  async function layout(count, fit) {
    const cy = hooks.cy;
    const nodes = cy.nodes('[kind != "group"]');
    if (count <= COSE_MAX_NODES) {
      // cose from a deterministic start (randomize off): the same map looks the same.
      if (fit) {
        const pos = gridPositions(nodes);
        cy.batch(() => nodes.forEach((n) => { n.position(pos[n.id()]); }));
      }
      const lay = cy.layout({ name: 'cose', animate: false, randomize: false, fit: true, padding: 30,
        nodeDimensionsIncludeLabels: true, nodeRepulsion: () => 8000, idealEdgeLength: () => 60,
        componentSpacing: 60, numIter: 1000 });
      const stopped = lay.promiseOn('layoutstop');
      lay.run();
      await stopped;
    } else {
      const pos = gridPositions(nodes);
      cy.batch(() => nodes.forEach((n) => { n.position(pos[n.id()]); }));
      if (fit) cy.fit(undefined, 30);
    }
    state.everFitted = cy.width() > 0;
  }

  function openNamespace(ns) {
    state.drillNs = ns;
    state.extra = {};
    loadMap();
  }

  // Viewport coordinates of a model position, for a test's real pointer click.
  function clientPoint(m) {
    const cy = hooks.cy;
    const r = cy.container().getBoundingClientRect();
    const z = cy.zoom(), p = cy.pan();
    return { x: r.left + m.x * z + p.x, y: r.top + m.y * z + p.y };
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
  // edge (a quadratic curve through its endpoints and midpoint) that a click reaches.
  function edgePosition(id) {
    const e = hooks.cy.getElementById(id);
    if (e.empty() || !e.isEdge()) return null;
    inView(e, e.midpoint());
    const s = e.sourceEndpoint(), t = e.targetEndpoint(), mid = e.midpoint();
    const c = { x: 2 * mid.x - (s.x + t.x) / 2, y: 2 * mid.y - (s.y + t.y) / 2 };
    const at = (u) => ({
      x: (1 - u) * (1 - u) * s.x + 2 * u * (1 - u) * c.x + u * u * t.x,
      y: (1 - u) * (1 - u) * s.y + 2 * u * (1 - u) * c.y + u * u * t.y,
    });
    for (const d of [0, 0.05, -0.05, 0.1, -0.1, 0.15, -0.15, 0.2, -0.2, 0.25, -0.25, 0.3, -0.3, 0.35, -0.35]) {
      const m = at(0.5 + d);
      if (hits(e, m)) return clientPoint(m);
    }
    return clientPoint(mid);
  }

  // ---- side panels ----
  function showSide(which) {
    for (const id of ['node-detail', 'edge-detail', 'policy-view']) $(id).hidden = id !== which;
    $('side-hint').hidden = !!which;
  }

  function setTab(tab) {
    if (!TABS.includes(tab)) tab = 'map';
    const wasHidden = state.tab === 'violations' || state.tab === 'suggestions';
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
    if (wasHidden && hooks.cy) hooks.cy.resize();
  }

  function selectNode(n) {
    const d = n.data();
    state.selected = { id: d.id, kind: d.kind, label: d.label, namespace: d.namespace };
    if (state.tab === 'policies' && d.kind === 'workload') { views.loadPolicyView(d.id); return; }
    const panel = clear($('node-detail'));
    const actions = el('div', { class: 'actions' });
    if (d.kind === 'workload') {
      actions.append(
        el('button', { type: 'button', id: 'show-policies', text: 'Policies', onclick: () => setTab('policies') }),
        el('button', { type: 'button', id: 'show-suggestions', text: 'Suggestions', onclick: () => setTab('suggestions') }),
        el('button', { type: 'button', id: 'filter-workload', text: 'Only its connections',
          onclick: () => { $('f-workload').value = d.id; loadMap(); } }));
    } else if (d.kind === 'namespace') {
      actions.append(el('button', { type: 'button', id: 'open-namespace', text: 'Show its workloads', onclick: () => openNamespace(d.namespace) }));
    }
    const deg = n.connectedEdges().length;
    panel.append(
      el('div', { class: 'panel-head' }, el('h2', { text: d.label }), closeButton(() => { state.mapSide = null; showSide(null); })),
      el('dl', { class: 'kv' },
        el('dt', { text: 'Kind' }), el('dd', { text: d.kind }),
        el('dt', { text: 'Id' }), el('dd', { class: 'mono', text: d.id }),
        d.namespace ? [el('dt', { text: 'Namespace' }), el('dd', { text: d.namespace })] : null,
        el('dt', { text: 'Edges drawn' }), el('dd', { text: fmtNum(deg) })),
      actions);
    state.mapSide = 'node-detail';
    if (state.tab !== 'map') setTab('map'); else showSide('node-detail');
  }
  const closeButton = (onclick) => el('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '×', onclick });

  // ---- header ----
  async function refreshStatus() {
    try {
      const s = await api('status');
      $('status-role').textContent = s.role || '?';
      $('status-node').textContent = s.role === 'relay' ? 'cluster' : (s.node || '');
      $('status-flows').textContent = `${fmtNum(s.flows_held)} flows held`;
      $('status-violations').textContent = `${fmtNum(s.violations_held)} violations held`;
      $('status-cluster').textContent = s.cluster_state ? '' : 'no cluster state';
      state.status = s;
    } catch (_) { /* shown in the error bar */ }
  }

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
        if (id === 'f-level') { state.drillNs = null; state.autoNamespaces = false; }
        state.extra = {};
        loadMap();
      });
    }
    $('map-back').addEventListener('click', () => { state.drillNs = null; state.extra = {}; loadMap(); });
    $('map-fit').addEventListener('click', () => hooks.cy.fit(undefined, 30));
    $('refresh').addEventListener('click', () => {
      refreshStatus();
      loadMap();
      if (state.tab === 'suggestions') views.loadSuggestions();
    });
    $('error-close').addEventListener('click', () => { $('error').hidden = true; });
    $('policy-yaml-close').addEventListener('click', () => { $('policy-yaml').hidden = true; });
    views.wireViews();
    setInterval(() => {
      if (!$('auto-refresh').checked || document.hidden) return;
      refreshStatus();
      if (hooks.ready) loadMap();
    }, REFRESH_MS);
    // A container shown after being hidden, or a resized window: Cytoscape caches its size.
    window.addEventListener('resize', () => hooks.cy && hooks.cy.resize());
  }

  // What views.js (edge detail, violations, policy viewer, suggestions) uses from here.
  let views = null;
  function start() {
    if (!window.observerViews || !window.cytoscape) {
      showError('The console did not load completely (vendor/cytoscape.min.js, views.js, app.js): reload the page.');
      return;
    }
    views = window.observerViews({
      $, el, clear, api, showError, splitList, state, hooks, setTab, showSide, loadMap,
      fmtNum, fmtBytes, fmtTime, endpointText, protoPort, verdictBadge, connectionsText, closeButton,
    });
    hooks.lineDiff = views.lineDiff;
    hooks.violations = views.violations; // {cursor, paused, received, lost}
    initMap();
    const tab = readUrl();
    wire();
    views.renderPolicyHint();
    setTab(tab);
    refreshStatus();
    loadMap();
    views.startViolations();
  }


  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
