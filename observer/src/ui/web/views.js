// The console's panels beside the map: the flows behind an edge and their explanation, a
// policy's YAML, live violations (Server-Sent Events), the policy viewer and its overlay on
// the map, suggested policies with their evidence and a diff. app.js calls this factory with
// what the panels share with the map (see `core` there). Text only ever goes in as text.
'use strict';
window.observerViews = function (core) {
  const { $, el, clear, put, api, state, hooks, setTab, showSide, loadMap, openNamespace, fmtNum, fmtBytes, fmtTime,
    endpointText, protoPort, verdictBadge, connectionsText, closeButton } = core;
  const MAX_VIOLATION_ROWS = 1000;
  const OVERLAY_CLASSES = 'policy-unused policy-used-allowed policy-used-denied policy-observed faded';

  // "Kind ns/name" or "Kind name" (cluster-scoped), as denied_by and allowed[].policy name it.
  function parsePolicyRef(s) {
    const m = /^(\S+) (?:([^/\s]+)\/)?(.+)$/.exec(String(s || ''));
    return m ? { kind: m[1], namespace: m[2], name: m[3] } : null;
  }
  const policyRefText = (p) => `${p.kind} ${p.namespace ? p.namespace + '/' : ''}${p.name}`;
  // A link that opens the policy's YAML (GET /api/policy) in the `policy-yaml` panel.
  function policyLink(p) {
    if (!p || !p.name) return null;
    return el('a', {
      href: '#', class: 'policy-link', text: policyRefText(p),
      dataset: { kind: p.kind || '', namespace: p.namespace || '', name: p.name },
      onclick: (ev) => { ev.preventDefault(); showPolicy(p); },
    });
  }
  // The policies an explanation's steps name, each once.
  function stepPolicies(ex) {
    const seen = new Map();
    for (const s of (ex && ex.steps) || []) if (s.policy && s.policy.name) seen.set(policyRefText(s.policy), s.policy);
    return [...seen.values()];
  }

  // ---- the header ----
  async function refreshStatus() {
    try {
      const s = await api('status');
      $('status-role').textContent = s.role || '?';
      $('status-node').textContent = s.role === 'relay' ? 'cluster' : (s.node || '');
      $('status-flows').textContent = `${fmtNum(s.flows_held)} flows held`;
      $('status-violations').textContent = `${fmtNum(s.violations_held)} violations held`;
      $('status-cluster').textContent = s.cluster_state ? '' : 'no cluster state';
      $('tab-suggestions').title = s.suggestions ? '' : 'Policy learning is off on this observer (observer run --suggest)';
    } catch (_) { /* shown in the error bar */ }
  }

  // ---- a node's panel ----
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
    put(panel,
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
  // ---- a policy's YAML ----
  let policyToken = 0;
  async function showPolicy(p) {
    const token = ++policyToken;
    $('policy-yaml').hidden = false;
    $('policy-yaml-title').textContent = policyRefText(p);
    $('policy-yaml-text').textContent = 'Loading…';
    try {
      const res = await api('policy', { kind: p.kind, namespace: p.namespace || undefined, name: p.name });
      if (token === policyToken) $('policy-yaml-text').textContent = res.yaml || '';
    } catch (e) {
      if (token === policyToken) $('policy-yaml-text').textContent = e.message;
    }
  }

  // ---- the flows behind an edge ----
  let edgeToken = 0;
  async function showEdge(edge) {
    const d = edge.data();
    const token = ++edgeToken;
    const panel = clear($('edge-detail'));
    state.mapSide = 'edge-detail';
    if (state.tab !== 'map') setTab('map'); else showSide('edge-detail');
    const name = (id) => hooks.cy.getElementById(id).data('label') || id;
    const body = el('div', { class: 'flows' }, el('p', { class: 'muted', text: 'Loading…' }));
    put(panel,
      el('div', { class: 'panel-head' }, el('h2', { text: `${name(d.source)} → ${name(d.target)}` }),
        closeButton(() => { state.mapSide = null; showSide(null); })),
      el('p', {}, verdictBadge(d.verdict), ' ', el('b', { text: protoPort(d.protocol, d.port) }),
        d.connections != null ? ` · ${connectionsText(d.connections)}` : '',
        d.bytes ? ` · ${fmtBytes(d.bytes)}, ${fmtNum(d.packets)} packets` : ''),
      d.denied_by ? el('p', {}, 'Latest denial by ', policyLink(parsePolicyRef(d.denied_by))) : null,
      d.policy ? el('p', {}, 'Allowed by ', policyLink(parsePolicyRef(d.policy)),
        d.rule_index != null ? ` rule ${d.rule_index}` : '') : null,
      body);
    if (edge.hasClass('policy-unused')) {
      body.replaceChildren(el('p', { text: 'Allowed by policy; no traffic seen on it in the flows held.' }));
      return;
    }
    // The drawn map's level and filters (an overlay edge is between workloads); the edge's
    // own protocol stands for the protocol filter.
    const drawn = state.drawn ? state.drawn.params : {};
    const p = {};
    for (const k of ['level', 'window', 'namespace', 'workload', 'verdict']) if (drawn[k] != null) p[k] = drawn[k];
    if (edge.hasClass('overlay')) { p.level = 'workload'; delete p.namespace; delete p.workload; delete p.verdict; }
    Object.assign(p, { source: d.source, target: d.target, protocol: d.protocol, port: d.port });
    let res;
    try {
      res = await api('edge', p);
    } catch (e) {
      if (token === edgeToken) body.replaceChildren(el('p', { class: 'error-inline', text: e.message }));
      return;
    }
    if (token !== edgeToken) return;
    const flows = res.flows || [];
    body.replaceChildren(
      el('p', { class: 'muted', text: `${fmtNum(flows.length)} of ${fmtNum(res.total ?? flows.length)} connections, newest first` }),
      ...flows.map(flowCard));
  }

  function explanationBlock(ex) {
    if (!ex) return null;
    const steps = ex.steps || [];
    return el('div', { class: 'explanation' },
      el('p', { class: 'summary', text: ex.summary || '' }),
      steps.length ? el('ol', { class: 'steps' }, steps.map((s) => el('li', { class: `step action-${s.action}` },
        el('span', { class: 'tag', text: `${s.direction || ''}${s.tier ? ' · ' + s.tier : ''}` }), ' ',
        el('b', { text: s.action || '' }), ' ', s.text || '', ' ',
        policyLink(s.policy),
        s.rule_index != null ? el('span', { class: 'muted', text: ` rule ${s.rule_index}` }) : null))) : null);
  }

  function flowCard(f) {
    const r = f.record || {};
    const src = r.src || {}, dst = r.dst || {};
    const wl = (ep) => (ep.workload ? ` ${ep.workload.kind} ${ep.workload.name}` : '');
    const row = (k, ...v) => [el('dt', { text: k }), el('dd', {}, ...v)];
    const svc = r.service;
    return el('div', { class: 'flow' },
      el('div', { class: 'flow-head' }, verdictBadge(f.verdict), ' ',
        el('b', { text: protoPort(r.protocol, dst.port) }), ' ', el('span', { class: 'muted', text: r.state || '' })),
      el('dl', { class: 'kv' },
        row('From', endpointText(src), el('span', { class: 'muted', text: wl(src) })),
        row('To', endpointText(dst), el('span', { class: 'muted', text: wl(dst) })),
        svc ? row('Service', `${svc.namespace}/${svc.name}:${svc.port} (backend ${svc.backend})`) : null,
        row('Ports', `${src.port ?? '–'} → ${dst.port ?? '–'}`),
        row('Sent', `${fmtNum(r.fwd && r.fwd.packets)} packets, ${fmtBytes(r.fwd && r.fwd.bytes)}`),
        row('Received', `${fmtNum(r.rev && r.rev.packets)} packets, ${fmtBytes(r.rev && r.rev.bytes)}`),
        row('First seen', fmtTime(r.first_seen)),
        row('Last seen', fmtTime(r.last_seen)),
        row('State', `${r.state || '–'}${r.node_name ? ' · seen on ' + r.node_name : ''}`)),
      explanationBlock(f.explanation));
  }

  // ---- live violations ----
  const vio = { es: null, cursor: null, paused: false, queue: [], received: 0, lost: 0, scheduled: false, retry: null };
  const setVioState = (text) => { $('violations-state').textContent = text; };

  function startViolations() {
    if (vio.es || vio.paused) return;
    // Reopened by hand with after=LAST rather than left to the browser's reconnection, so
    // the query's `after` never competes with the Last-Event-ID header.
    const url = 'api/violations' + (vio.cursor != null ? '?after=' + encodeURIComponent(vio.cursor) : '');
    const es = new EventSource(url);
    vio.es = es;
    setVioState('connecting…');
    es.onopen = () => setVioState('following');
    es.addEventListener('violation', (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      const cursor = d.cursor ?? ev.lastEventId;
      if (typeof cursor === 'number' && typeof vio.cursor === 'number' && cursor <= vio.cursor) return;
      if (cursor != null && cursor !== '') vio.cursor = cursor;
      vio.received++;
      enqueue({ lost: false, d });
    });
    es.addEventListener('lost', (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      if (d.through != null) vio.cursor = d.through;
      // `violations` is null when they were an earlier run's (the observer restarted):
      // how many is unknown, and cursors are not a count.
      vio.lost += Number(d.violations) || 0;
      enqueue({ lost: true, d });
    });
    es.onerror = () => {
      stopStream();
      setVioState('disconnected; retrying in 3 s');
      vio.retry = setTimeout(() => { vio.retry = null; startViolations(); }, 3000);
    };
  }
  function stopStream() {
    if (vio.es) { vio.es.close(); vio.es = null; }
    if (vio.retry) { clearTimeout(vio.retry); vio.retry = null; }
  }
  function togglePause() {
    vio.paused = !vio.paused;
    const b = $('violations-pause');
    b.textContent = vio.paused ? 'Resume' : 'Pause';
    b.setAttribute('aria-pressed', String(vio.paused));
    if (vio.paused) {
      stopStream();
      setVioState(`paused after cursor ${vio.cursor ?? '(none yet)'}`);
    } else {
      startViolations();
    }
  }
  function enqueue(item) {
    vio.queue.push(item);
    if (vio.queue.length > 2 * MAX_VIOLATION_ROWS) vio.queue.splice(0, vio.queue.length - MAX_VIOLATION_ROWS);
    if (vio.scheduled) return;
    vio.scheduled = true;
    // Rows are added once a frame, however fast events come; the timeout covers a
    // background tab, which runs no frames.
    const go = () => { if (vio.scheduled) { vio.scheduled = false; flushViolations(); } };
    requestAnimationFrame(go);
    setTimeout(go, 500);
  }
  function flushViolations() {
    const items = vio.queue.splice(0).slice(-MAX_VIOLATION_ROWS);
    const frag = document.createDocumentFragment();
    for (let i = items.length - 1; i >= 0; i--) frag.append(items[i].lost ? lostRow(items[i].d) : violationRow(items[i].d));
    const tbody = $('violations-table').tBodies[0];
    tbody.prepend(frag);
    while (tbody.rows.length > MAX_VIOLATION_ROWS) tbody.lastElementChild.remove();
    $('violations-count').textContent = `${fmtNum(vio.received)} received${vio.lost ? `, ${fmtNum(vio.lost)} lost` : ''}; ${fmtNum(tbody.rows.length)} shown (newest first, at most ${fmtNum(MAX_VIOLATION_ROWS)})`;
    $('violations-badge').textContent = vio.received ? fmtNum(vio.received) : '';
  }
  function violationRow(d) {
    const r = d.record || {};
    const ex = d.explanation || {};
    return el('tr', { class: 'violation', dataset: { cursor: String(d.cursor ?? '') } },
      el('td', { class: 'time', text: fmtTime(r.last_seen || r.first_seen) }),
      el('td', { text: endpointText(r.src || {}) }),
      el('td', { text: endpointText(r.dst || {}) }),
      el('td', { text: protoPort(r.protocol, r.dst && r.dst.port) }),
      el('td', {}, verdictBadge(d.verdict)),
      el('td', { class: 'why' }, el('span', { class: 'summary', text: ex.summary || '' }),
        stepPolicies(ex).map((p) => [' ', policyLink(p)])));
  }
  function lostRow(d) {
    return el('tr', { class: 'lost' }, el('td', { colspan: 6,
      text: d.violations == null
        ? `The observer restarted: the violations of its earlier run after cursor ${d.after ?? '–'} are no longer held (how many is unknown)`
        : `${fmtNum(d.violations)} violations were lost (no longer held: after cursor ${d.after ?? '–'} through ${d.through ?? '–'})` }));
  }

  // ---- policy viewer and its overlay ----
  function renderPolicyHint() {
    if (state.policyFor) return;
    clear($('policy-view')).append(el('div', { class: 'panel-head' }, el('h2', { text: 'Policies' })),
      el('p', { class: 'hint', text: 'Click a workload on the map to see the policies that select it, their rules and which of them traffic used.' }));
  }

  let pvToken = 0;
  async function loadPolicyView(id) {
    const token = ++pvToken;
    state.policyFor = id;
    const panel = clear($('policy-view'));
    panel.append(el('div', { class: 'panel-head' }, el('h2', { text: 'Policies' })), el('p', { class: 'muted', text: `Loading ${id}…` }));
    let res;
    try {
      res = await api('policy_view', { workload: id });
    } catch (e) {
      if (token === pvToken) panel.append(el('p', { class: 'error-inline', text: e.message }));
      return;
    }
    if (token !== pvToken) return;
    renderPolicyView(res);
    state.overlay = res;
    drawOverlay(res);
  }

  function renderPolicyView(res) {
    const w = res.workload || {};
    const policies = res.policies || [];
    const panel = clear($('policy-view'));
    const unused = (res.allowed || []).filter((a) => !a.observed).length;
    put(panel,
      el('div', { class: 'panel-head' }, el('h2', { text: `${w.kind || ''} ${w.namespace || ''}/${w.name || w.id || ''}` })),
      el('p', { class: 'muted', text: `${fmtNum(w.pods)} pods · ${policies.length} policies select it · ${(res.observed || []).length} edges observed · ${unused} allowed edges never used` }),
      res.note ? el('p', { class: 'note', text: res.note }) : null,
      el('div', { class: 'actions' },
        el('button', { type: 'button', id: 'policy-overlay-clear', text: 'Clear overlay',
          onclick: () => { state.overlay = null; removeOverlay(); } }),
        el('span', { class: 'legend' }, el('span', { class: 'l-unused', text: 'allowed, never used' }),
          el('span', { class: 'l-used-allowed', text: 'used and allowed' }), el('span', { class: 'l-used-denied', text: 'used and denied' }))));
    for (const dir of ['ingress', 'egress']) {
      const sel = policies.filter((p) => (p.directions || []).includes(dir));
      const sec = el('section', { class: 'direction', dataset: { direction: dir } }, el('h3', { text: dir === 'ingress' ? 'Ingress' : 'Egress' }));
      if (!sel.length) sec.append(el('p', { class: 'muted', text: `No policy selects it for ${dir}: it is not isolated for ${dir}.` }));
      for (const p of sel) {
        const rules = (p.rules || []).filter((r) => r.direction === dir);
        sec.append(el('div', { class: 'policy' },
          el('div', { class: 'policy-title' }, policyLink(p), p.tier ? el('span', { class: 'tag', text: p.tier }) : null),
          rules.length ? el('ul', { class: 'rules' }, rules.map(ruleRow))
            : el('p', { class: 'muted', text: `No ${dir} rules: it isolates the workload and allows nothing itself.` }),
          p.yaml ? el('details', {}, el('summary', { text: 'YAML' }), el('pre', { class: 'yaml', text: p.yaml })) : null));
      }
      panel.append(sec);
    }
  }
  function ruleRow(r) {
    const usage = r.used ? `used by ${fmtNum(r.connections)} connection${r.connections === 1 ? '' : 's'}`
      : (String(r.action).toLowerCase() === 'allow' ? 'allowed, never used' : 'never used');
    return el('li', { class: `rule ${r.used ? 'used' : 'unused'}`, 'data-rule-used': String(!!r.used) },
      el('span', { class: 'rule-index', text: `#${r.index}` }), ' ',
      el('span', { class: 'tag', text: r.action || '' }), ' ',
      el('span', { class: 'rule-text', text: r.text || '' }), ' ',
      el('span', { class: 'usage', text: usage }));
  }

  function removeOverlay() {
    const cy = hooks.cy;
    cy.batch(() => { cy.elements('.overlay').remove(); cy.elements().removeClass(OVERLAY_CLASSES); });
  }
  // A node the overlay needs that the map does not draw (another namespace's workload, or
  // the namespace view): its data from its id.
  function nodeFromId(id) {
    const m = /^wl:([^/]+)\/[^/]+\/(.+)$/.exec(id);
    if (m) return { id, kind: 'workload', namespace: m[1], label: m[2], short: m[2] };
    const [prefix, rest] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)];
    const kind = { ns: 'namespace', node: 'node', ip: 'external' }[prefix] || 'unknown';
    return { id, kind, namespace: kind === 'namespace' ? rest : null, label: rest, short: rest };
  }
  function drawOverlay(pv) {
    const cy = hooks.cy;
    removeOverlay();
    const center = pv.workload && pv.workload.id;
    const key = (x) => [x.source, x.target, x.protocol, x.port].join('|');
    const want = new Map();
    for (const o of pv.observed || []) {
      const cls = o.verdict === 'denied' ? 'policy-used-denied' : o.verdict === 'allowed' ? 'policy-used-allowed' : 'policy-observed';
      want.set(key(o), { x: o, cls });
    }
    for (const a of pv.allowed || []) {
      const w = want.get(key(a));
      if (w) { w.allowed = a; if (w.cls === 'policy-observed') w.cls = 'policy-used-allowed'; continue; }
      want.set(key(a), { x: a, allowed: a, cls: a.observed ? 'policy-used-allowed' : 'policy-unused' });
    }
    const needed = new Set(center ? [center] : []);
    for (const w of want.values()) { needed.add(w.x.source); needed.add(w.x.target); }
    const missing = [...needed].filter((id) => id && cy.getElementById(id).empty());
    cy.batch(() => {
      // Missing nodes go on a circle around the workload (the view's centre if it is missing too).
      let c = center && cy.getElementById(center).nonempty() ? cy.getElementById(center).position() : null;
      if (!c) {
        const z = cy.zoom(), p = cy.pan();
        c = { x: (cy.width() / 2 - p.x) / z, y: (cy.height() / 2 - p.y) / z };
      }
      const ring = missing.filter((id) => id !== center);
      const R = 160 + 12 * ring.length;
      if (missing.includes(center)) cy.add({ group: 'nodes', data: nodeFromId(center), classes: 'overlay', position: { x: c.x, y: c.y } });
      ring.forEach((id, i) => {
        const t = (2 * Math.PI * i) / ring.length;
        cy.add({ group: 'nodes', data: nodeFromId(id), classes: 'overlay', position: { x: c.x + R * Math.cos(t), y: c.y + R * Math.sin(t) } });
      });
      cy.elements().addClass('faded');
      let involved = cy.getElementById(center);
      for (const [k, w] of want) {
        let e = cy.getElementById(k);
        if (e.empty()) {
          const a = w.allowed || {};
          e = cy.add({ group: 'edges', classes: 'overlay', data: {
            id: 'overlay:' + k, source: w.x.source, target: w.x.target, protocol: w.x.protocol, port: w.x.port,
            verdict: w.x.verdict || 'none', connections: w.x.connections, label: protoPort(w.x.protocol, w.x.port),
            width: 2, bytes: 0, policy: a.policy || null, rule_index: a.rule_index ?? null } });
        }
        e.addClass(w.cls);
        involved = involved.union(e).union(e.connectedNodes());
      }
      involved = involved.union(involved.nodes().ancestors());
      involved.removeClass('faded');
    });
  }

  // ---- suggestions ----
  const selectedWorkload = () => (state.selected && state.selected.kind === 'workload' ? state.selected : null);
  const suggestionsKey = () => `${(selectedWorkload() || {}).id || '*'}|${$('suggestions-format').value}`;
  let sugToken = 0;
  async function loadSuggestions() {
    const token = ++sugToken;
    state.suggestionsFor = suggestionsKey();
    const w = selectedWorkload();
    $('suggestions-scope').textContent = w ? `For ${w.label} (${w.id})` : 'For every workload';
    $('suggestions-all').hidden = !w;
    const list = clear($('suggestions-list'));
    list.append(el('p', { class: 'muted', text: 'Loading…' }));
    let res;
    try {
      res = await api('suggestions', { workload: w ? w.id : undefined, format: $('suggestions-format').value });
    } catch (e) {
      if (token === sugToken) list.replaceChildren(el('p', { class: 'error-inline', text: e.message }));
      return;
    }
    if (token !== sugToken) return;
    const note = $('suggestions-note');
    note.textContent = res.note || (res.available === false ? 'Suggestions are not available.' : '');
    note.hidden = !note.textContent;
    clear($('suggestions-summary'));
    list.replaceChildren();
    if (res.available === false) return;
    renderSummary(res.summary || {});
    const items = res.suggestions || [];
    if (!items.length) list.append(el('p', { class: 'muted', text: 'No suggestion: no traffic learned for it yet.' }));
    list.append(...items.map(suggestionCard));
  }

  const FIGURES = [['flows_checked', 'flows checked'], ['flows_allowed', 'flows allowed'],
    ['newly_denied_pairs', 'newly denied workload pairs'], ['flows_denied_by_declared', 'flows denied by a declared Deny rule']];
  function renderSummary(s) {
    const named = new Set(FIGURES.map((f) => f[0]));
    const figs = [...FIGURES, ...Object.keys(s).filter((k) => !named.has(k)).map((k) => [k, k.replace(/_/g, ' ')])];
    const checked = Number(s.flows_checked) || 0, allowed = Number(s.flows_allowed) || 0, declared = Number(s.flows_denied_by_declared) || 0;
    const holds = allowed + declared >= checked;
    $('suggestions-summary').append(
      el('h3', { text: 'Proof against the flows held' }),
      el('dl', { class: 'figures' }, figs.map(([k, label]) => el('div', { class: 'figure' }, el('dt', { text: label }),
        el('dd', { dataset: { figure: k }, text: typeof s[k] === 'object' ? JSON.stringify(s[k]) : fmtNum(s[k] ?? 0) })))),
      el('p', { class: holds ? 'proof ok' : 'proof bad',
        text: holds ? 'Every flow held is allowed with the suggestions applied (or denied by a declared Deny rule today).'
          : `${fmtNum(checked - allowed - declared)} flows held would be denied: the suggestions are incomplete.` }));
  }

  const dirText = (d) => (d === 1 || /egress/i.test(String(d)) ? 'egress' : 'ingress');
  function peerText(p) {
    if (p == null) return '–';
    if (typeof p === 'string') return p;
    const x = p.peer || p;
    if (x.workload) return `${x.workload.kind} ${x.workload.namespace}/${x.workload.name}`;
    if (x.node) return `node ${x.node.name}${x.node.ip ? ` (${x.node.ip})` : ''}`;
    if (x.external_cidr) return x.external_cidr;
    if (x.name && x.kind) return `${x.kind} ${x.namespace ? x.namespace + '/' : ''}${x.name}`;
    return JSON.stringify(x);
  }
  function portsText(ports) {
    if (!Array.isArray(ports) || !ports.length) return typeof ports === 'string' ? ports : 'all ports';
    return ports.map((p) => (typeof p === 'object'
      ? `${p.protocol}/${p.name || (!p.last || p.last === p.first ? p.first : `${p.first}-${p.last}`)}` : String(p))).join(', ');
  }
  function evidenceTable(rules) {
    if (!rules || !rules.length) return el('p', { class: 'muted', text: 'No rules: the policy denies all traffic of the workload.' });
    const head = ['Direction', 'Peer', 'Ports', 'Flows', 'Packets', 'Bytes', 'First seen', 'Last seen', 'Nodes', 'Example'];
    return el('table', { class: 'evidence' }, el('thead', {}, el('tr', {}, head.map((h) => el('th', { text: h })))),
      el('tbody', {}, rules.map((r) => {
        const e = r.evidence || {};
        return el('tr', {}, [dirText(r.direction), peerText(r.peer), portsText(r.ports), fmtNum(e.flows ?? 0),
          fmtNum(e.packets ?? 0), fmtBytes(Number(e.bytes ?? 0)), fmtTime(e.first_seen), fmtTime(e.last_seen),
          (e.nodes || []).join(', '), e.example || ''].map((t) => el('td', { text: t })));
      })));
  }

  function suggestionCard(s) {
    const yaml = s.yaml || '';
    const file = `${s.namespace}-${s.name}.yaml`.replace(/[^A-Za-z0-9._-]/g, '_');
    const declared = s.declared || [];
    return el('article', { class: 'suggestion', dataset: { namespace: s.namespace || '', name: s.name || '' } },
      el('div', { class: 'suggestion-head' },
        el('h3', { text: `${s.kind} ${s.namespace}/${s.name}` }),
        s.stability ? el('span', { class: `badge stability-${s.stability}`, text: s.stability }) : null,
        el('span', { class: 'muted', text: `${fmtNum(s.ingress_rules ?? 0)} ingress, ${fmtNum(s.egress_rules ?? 0)} egress rules` }),
        el('button', { type: 'button', class: 'copy', text: 'Copy', onclick: (ev) => copyText(yaml, ev.currentTarget) }),
        el('button', { type: 'button', class: 'download', text: 'Download', onclick: () => download(file, yaml) })),
      s.selector_note ? el('p', { class: 'note', text: s.selector_note }) : null,
      el('pre', { class: 'yaml', text: yaml }),
      el('h4', { text: 'Evidence' }), evidenceTable(s.rules),
      (s.portless || []).length ? el('p', { class: 'muted', text: `Also seen, without ports: ${s.portless.map((t) => `${dirText(t.direction)} ${t.protocol} ${peerText(t.peer)}`).join('; ')}` }) : null,
      declared.length ? declared.map((d) => el('div', { class: 'diff-block' },
        el('h4', {}, 'Diff against declared ', policyLink(d)), diffPre(d, yaml)))
        : el('p', { class: 'muted', text: 'No declared policy selects this workload today (or the server holds no cluster state).' }));
  }

  // Line diff by longest common subsequence: [[op, line]] with op ' ', '-' (only in a),
  // '+' (only in b). Common head and tail are trimmed first; a middle too large for the
  // table becomes all '-' then all '+'.
  function lineDiff(a, b) {
    const A0 = String(a).split('\n'), B0 = String(b).split('\n');
    let pre = 0;
    while (pre < A0.length && pre < B0.length && A0[pre] === B0[pre]) pre++;
    let suf = 0;
    while (suf < A0.length - pre && suf < B0.length - pre && A0[A0.length - 1 - suf] === B0[B0.length - 1 - suf]) suf++;
    const A = A0.slice(pre, A0.length - suf), B = B0.slice(pre, B0.length - suf);
    const out = A0.slice(0, pre).map((l) => [' ', l]);
    const n = A.length, m = B.length, w = m + 1;
    if (n * m > 4e6) {
      A.forEach((l) => out.push(['-', l]));
      B.forEach((l) => out.push(['+', l]));
    } else {
      const L = new Uint32Array((n + 1) * w);
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          L[i * w + j] = A[i] === B[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
        }
      }
      let i = 0, j = 0;
      while (i < n && j < m) {
        if (A[i] === B[j]) { out.push([' ', A[i]]); i++; j++; }
        else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) out.push(['-', A[i++]]);
        else out.push(['+', B[j++]]);
      }
      while (i < n) out.push(['-', A[i++]]);
      while (j < m) out.push(['+', B[j++]]);
    }
    A0.slice(A0.length - suf).forEach((l) => out.push([' ', l]));
    return out;
  }
  function diffPre(declared, yaml) {
    const lines = lineDiff(declared.yaml || '', yaml);
    if (lines.every(([op]) => op === ' ')) return el('p', { class: 'muted', text: 'Same as the declared policy.' });
    const cls = { ' ': 'diff-same', '-': 'diff-del', '+': 'diff-add' };
    return el('pre', { class: 'diff' },
      el('span', { class: 'diff-head', text: `--- declared ${policyRefText(declared)}\n+++ suggested\n` }),
      lines.map(([op, l]) => el('span', { class: cls[op], text: `${op}${l}\n` })));
  }

  async function copyText(text, btn) {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; }
    } catch (_) { /* denied: fall back */ }
    if (!ok) {
      // Outside a secure context (plain http to a non-loopback address): the old way.
      const ta = el('textarea', { class: 'offscreen', readonly: true });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      ta.remove();
    }
    const was = btn.textContent;
    btn.textContent = ok ? 'Copied' : 'Copy failed: select the text';
    setTimeout(() => { btn.textContent = was; }, 1500);
  }
  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
    const a = el('a', { href: url, download: name, class: 'offscreen' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function wireViews() {
    $('violations-pause').addEventListener('click', togglePause);
    $('suggestions-reload').addEventListener('click', loadSuggestions);
    $('suggestions-format').addEventListener('change', loadSuggestions);
    $('suggestions-all').addEventListener('click', () => {
      state.selected = null;
      hooks.cy.nodes(':selected').unselect();
      loadSuggestions();
    });
  }

  return {
    refreshStatus, selectNode, showEdge, showPolicy, startViolations, loadPolicyView, renderPolicyHint, drawOverlay, removeOverlay,
    loadSuggestions, suggestionsKey, wireViews, lineDiff, violations: vio,
  };
};
