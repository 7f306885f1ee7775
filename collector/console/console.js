/* Vigil console: draws every view from the collector's JSON API.
 *
 * The token lives in this tab's sessionStorage and travels only in the
 * Authorization header of fetch() calls to this origin: a browser never
 * attaches it by itself, so no other site can make this console act (no
 * CSRF), and it is gone when the tab closes. Everything from the store is
 * attacker-influenced (program names, hosts, models come from workstations):
 * it is only ever set as textContent, never parsed as HTML. */
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'vigil.token';
let me = null;                 /* {name, role, currency} of the token */
let cursors = [''];            /* events: the cursor of each page seen, newest first */

function token() { return sessionStorage.getItem(KEY) || ''; }

class AuthError extends Error {}

async function api(path, method) {
	const r = await fetch(path, {
		method: method || 'GET',
		headers: { Authorization: 'Bearer ' + token() },
		cache: 'no-store',
		credentials: 'omit',
	});
	if (r.status === 401) {
		logout('Your token was refused; log in again.');
		throw new AuthError('401');
	}
	if (!r.ok) {
		let msg = r.status + ' ' + r.statusText;
		try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
		throw new Error(msg);
	}
	return r;
}

async function ndjson(path) {
	const r = await api(path);
	const text = await r.text();
	return { rows: text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)), resp: r };
}

function qs(params) {
	const q = new URLSearchParams();
	for (const [k, v] of Object.entries(params))
		if (v !== undefined && v !== null && String(v) !== '')
			q.set(k, v);
	return q.toString();
}

function formParams(form) {
	const o = {};
	for (const el of form.elements)
		if (el.name)
			o[el.name] = el.value.trim();
	return o;
}

function el(tag, text, cls) {
	const e = document.createElement(tag);
	if (text !== undefined && text !== null)
		e.textContent = String(text);
	if (cls)
		e.className = cls;
	return e;
}

function clear(node) {
	while (node.firstChild)
		node.removeChild(node.firstChild);
}

function showError(msg) { $('error').textContent = msg || ''; }

function findingsText(list) {
	return (list || []).map((f) => f.type + ':' + f.count).join(', ');
}

function costText(row) {
	return typeof row.cost === 'number' ? row.cost.toFixed(6) + ' ' + (row.currency || '') : '';
}

/* ---------------------------------------------------------------- login */

async function login(ev) {
	ev.preventDefault();
	$('login-error').textContent = '';
	sessionStorage.setItem(KEY, $('token').value.trim());
	$('token').value = '';
	try {
		await start();
	} catch (e) {
		sessionStorage.removeItem(KEY);   /* e.g. a metrics token: 403 */
		if (!(e instanceof AuthError))
			$('login-error').textContent = e.message;
	}
}

function logout(msg) {
	sessionStorage.removeItem(KEY);
	me = null;
	$('app').hidden = true;
	$('login').hidden = false;
	$('login-error').textContent = msg || '';
}

async function start() {
	const r = await api('/api/v1/whoami');
	me = await r.json();
	$('who').textContent = me.name + ' (' + me.role + ')';
	$('login').hidden = true;
	$('app').hidden = false;
	if (!location.hash)
		location.hash = '#events';
	route();
}

/* ---------------------------------------------------------------- views */

function showView(name) {
	for (const v of document.querySelectorAll('.view'))
		v.hidden = v.id !== 'view-' + name;
	for (const a of document.querySelectorAll('nav a'))
		a.classList.toggle('active', a.getAttribute('href') === '#' + name);
}

async function route() {
	if (!me)
		return;
	showError('');
	const h = location.hash.slice(1);
	const [name, ...rest] = h.split('/');
	try {
		switch (name) {
		case 'event': showView('event'); await loadEvent(rest.map(decodeURIComponent)); break;
		case 'top': showView('top'); await loadTop(); break;
		case 'inventory': showView('inventory'); await loadInventory(); break;
		case 'alerts': showView('alerts'); await loadAlerts(); break;
		case 'agents': showView('agents'); await loadAgents(); break;
		case 'verify': showView('verify'); break;
		default: showView('events'); await loadEvents(); break;
		}
	} catch (e) {
		if (!(e instanceof AuthError))
			showError(e.message);
	}
}

/* Events: keyset pages. cursors[i] is the cursor of page i (the server's
 * X-Vigil-Next of page i-1), so Older and Newer never scan skipped rows. */
async function loadEvents() {
	const f = formParams($('filters'));
	const page = cursors.length - 1;
	const t0 = performance.now();
	const { rows, resp } = await ndjson('/api/v1/events?' + qs({ ...f, format: 'json', cursor: cursors[page] }));
	const next = resp.headers.get('X-Vigil-Next');
	const tb = $('events-table').tBodies[0];
	clear(tb);
	for (const e of rows) {
		const tr = el('tr', null, 'clickable');
		const cells = [e.time, e.user, e.host, e.exe, e.provider, e.model, e.kind, e.action, e.rule,
			findingsText(e.findings), costText(e)];
		cells.forEach((c, i) => tr.appendChild(el('td', c, i === 7 && c === 'block' ? 'block' : '')));
		const link = '#event/' + [e.agent_id, e.boot_id, e.seq].map(encodeURIComponent).join('/');
		tr.dataset.link = link;
		tr.addEventListener('click', () => { location.hash = link; });
		tb.appendChild(tr);
	}
	$('older').disabled = !next;
	$('older').dataset.next = next || '';
	$('newer').disabled = page === 0;
	$('newest').disabled = page === 0;
	$('events-status').textContent = 'page ' + (page + 1) + ', ' + rows.length + ' events (' +
		Math.round(performance.now() - t0) + ' ms)';
	document.body.dataset.eventsLoaded = String(Date.now());
}

function addDl(dl, pairs) {
	clear(dl);
	for (const [k, v] of pairs) {
		if (v === undefined || v === null || v === '')
			continue;
		dl.appendChild(el('dt', k));
		dl.appendChild(el('dd', v));
	}
}

async function loadEvent(ref) {
	const [agent, boot, seq] = ref;
	const r = await api('/api/v1/event?' + qs({ agent, boot, seq }));
	const { event: e, chain: c } = await r.json();
	addDl($('ev-decision'), [['kind', e.kind], ['action', e.action], ['rule', e.rule], ['reason', e.reason],
		['error', e.error], ['injection score', e.injection_score], ['policy', e.policy_hash],
		['cost', costText(e)]]);
	addDl($('ev-identity'), [['time', e.time], ['user', e.user], ['uid', e.uid], ['host', e.host],
		['program', e.exe], ['comm', e.comm], ['pid', e.pid], ['cgroup', e.cgroup],
		['container', e.container_id]]);
	addDl($('ev-request'), [['provider', e.provider], ['model', e.model], ['sni', e.sni],
		['destination', e.dst_ip ? e.dst_ip + ':' + e.dst_port : ''], ['method', e.method], ['path', e.path],
		['status', e.status], ['prompt tokens', e.prompt_tokens], ['completion tokens', e.completion_tokens],
		['latency ms', e.latency_ms], ['MCP method', e.mcp_method], ['tool', e.tool]]);
	/* Types and counts only: the store never holds a finding's value. */
	const tb = $('ev-findings').tBodies[0];
	clear(tb);
	for (const list of ['findings', 'output_findings', 'output_redacted'])
		for (const f of e[list] || []) {
			const tr = el('tr');
			[list, f.type, f.count].forEach((v) => tr.appendChild(el('td', v)));
			tb.appendChild(tr);
		}
	addDl($('ev-chain'), [['agent', c.agent_id], ['boot', c.boot_id], ['seq', c.seq],
		['agent head seq', c.head_seq], ['retention horizon seq', c.horizon_seq], ['prev hash', c.prev_hash],
		['hash', c.hash], ['signed by the agent', c.signed ? 'yes' : 'no (made by the collector)'],
		['event id', e.event_id]]);
}

function fillTable(table, rows, cols) {
	const tb = table.tBodies[0];
	clear(tb);
	for (const r of rows) {
		const tr = el('tr');
		for (const c of cols) {
			const v = typeof c === 'function' ? c(r) : r[c];
			tr.appendChild(v instanceof Node ? wrapTd(v) : el('td', v));
		}
		tb.appendChild(tr);
	}
}

function wrapTd(node) {
	const td = el('td');
	td.appendChild(node);
	return td;
}

async function loadTop() {
	const f = formParams($('top-form'));
	const { rows } = await ndjson('/api/v1/top?' + qs({ ...f, format: 'json', limit: 50 }));
	fillTable($('top-table'), rows, ['key', 'events', 'blocked', 'occurrences', costText]);
}

async function loadInventory() {
	const f = formParams($('inventory-form'));
	const { rows } = await ndjson('/api/v1/inventory?' + qs({ ...f, format: 'json' }));
	const admin = me.role === 'admin';
	fillTable($('inventory-table'), rows, ['user', 'exe', 'provider', 'host', 'first_seen', 'last_seen', 'events',
		'requests', 'tokens', 'findings', 'blocks',
		(r) => typeof r.pair_cost === 'number' ? r.pair_cost.toFixed(6) + ' ' + r.currency : '',
		(r) => el('span', r.review, r.review),
		(r) => admin ? reviewButtons(r) : el('span', '')]);
	const rv = await ndjson('/api/v1/events?' + qs({ kind: 'review', format: 'json', limit: 20 }));
	fillTable($('reviews-table'), rv.rows, ['time', 'user', 'exe', 'provider', 'action']);
}

function reviewButtons(r) {
	const span = el('span');
	for (const state of ['approved', 'unapproved', 'unreviewed']) {
		if (state === r.review)
			continue;
		const b = el('button', state === 'approved' ? 'approve' : state === 'unapproved' ? 'unapprove' : 'reset');
		b.type = 'button';
		b.className = 'review-' + state;
		b.addEventListener('click', () => review(r.exe, r.provider, state));
		span.appendChild(b);
	}
	return span;
}

/* A state change: POST with the token in the header (see the top). */
async function review(exe, provider, state) {
	try {
		await api('/api/v1/review?' + qs({ exe, provider, state }), 'POST');
		await loadInventory();
	} catch (e) {
		if (!(e instanceof AuthError))
			showError('review: ' + e.message);
	}
}

async function loadAlerts() {
	const f = formParams($('alerts-form'));
	const { rows } = await ndjson('/api/v1/events?' + qs({ ...f, kind: 'alert', format: 'json', limit: 200 }));
	fillTable($('alerts-table'), rows, ['time', 'rule', 'user', 'host', 'exe', 'provider', 'reason']);
}

async function loadAgents() {
	const { rows } = await ndjson('/api/v1/agents?format=json');
	fillTable($('agents-table'), rows, ['agent_id', 'version', 'last_seen', (r) => r.silent ? 'SILENT' : 'no',
		(r) => r.revoked ? 'yes' : 'no', 'head_seq', 'tamper', 'unclean_stops',
		(r) => r.gaps + ' (' + r.missing_seqs + ')']);
}

async function runVerify() {
	$('verify-status').textContent = 'verifying...';
	$('verify-status').className = '';
	clear($('verify-out'));
	try {
		const r = await api('/api/v1/verify');
		const state = r.headers.get('X-Vigil-Verify') || '';
		$('verify-out').textContent = await r.text();
		$('verify-status').textContent = state === 'intact' ? 'INTACT' : 'BROKEN';
		$('verify-status').className = state === 'intact' ? 'intact' : 'broken';
	} catch (e) {
		if (!(e instanceof AuthError))
			$('verify-status').textContent = e.message;
	}
}

function init() {
	$('login-form').addEventListener('submit', login);
	$('logout').addEventListener('click', () => logout(''));
	$('filters').addEventListener('submit', (ev) => { ev.preventDefault(); cursors = ['']; route(); });
	$('older').addEventListener('click', () => { cursors.push($('older').dataset.next); route(); });
	$('newer').addEventListener('click', () => { if (cursors.length > 1) cursors.pop(); route(); });
	$('newest').addEventListener('click', () => { cursors = ['']; route(); });
	for (const id of ['top-form', 'inventory-form', 'alerts-form'])
		$(id).addEventListener('submit', (ev) => { ev.preventDefault(); route(); });
	$('verify-run').addEventListener('click', runVerify);
	window.addEventListener('hashchange', route);
	if (token())
		start().catch((e) => { if (!(e instanceof AuthError)) $('login-error').textContent = e.message; });
}

document.addEventListener('DOMContentLoaded', init);
