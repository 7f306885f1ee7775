// The collector's web console driven by Debian's chromium (headless) through
// puppeteer-core, for tests/e2e/test_console.py. argv[2]: JSON
// {url, admin, analyst, user, xss_exe, block_exe, key}; prints one JSON line of
// what it saw. Every step throws with a message saying what was missing.
import puppeteer from 'puppeteer-core';

const spec = JSON.parse(process.argv[2]);
const out = { steps: [], csp_violations: [], console_errors: [], page_errors: [], responses: [] };

async function waitRows(page, sel, pred, what, timeout = 15000) {
	try {
		// A string: evaluated over CDP, never by the page (whose CSP forbids eval).
		await page.waitForFunction(`(() => { const rows = [...document.querySelectorAll(${JSON.stringify(sel)} +
			' tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)); return rows.length && (${pred}); })()`,
		{ timeout, polling: 100 });
	} catch (e) {
		const rows = await page.$$eval(sel + ' tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
		const err = await page.$eval('#error', (e) => e.textContent).catch(() => '');
		throw new Error(what + ': rows ' + JSON.stringify(rows.slice(0, 5)) + ' error ' + err);
	}
	return page.$$eval(sel + ' tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
}

async function newPage(browser) {
	const page = await browser.newPage();
	// CDP injects this outside the page's CSP: it only listens.
	await page.evaluateOnNewDocument(() => {
		window.__csp = [];
		document.addEventListener('securitypolicyviolation', (e) =>
			window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
	});
	page.on('console', (m) => {
		if (/Content.Security.Policy/i.test(m.text()))
			out.csp_violations.push(m.text());
		else if (m.type() === 'error')
			out.console_errors.push(m.text());
	});
	page.on('pageerror', (e) => out.page_errors.push(String(e)));
	page.on('response', (r) => out.responses.push({ url: r.url(), status: r.status(),
		csp: r.headers()['content-security-policy'] || '', nosniff: r.headers()['x-content-type-options'] || '',
		referrer: r.headers()['referrer-policy'] || '' }));
	return page;
}

async function login(page, token) {
	await page.goto(spec.url + '/', { waitUntil: 'load' });
	await page.waitForSelector('#login-form', { visible: true });
	await page.type('#token', token);
	await page.click('#login-button');
}

async function collectCsp(page) {
	const v = await page.evaluate(() => window.__csp || []);
	out.csp_violations.push(...v);
}

async function setFilters(page, f) {
	await page.$$eval('#filters input', (ins) => ins.forEach((i) => { i.value = ''; }));
	for (const [k, v] of Object.entries(f))
		await page.$eval(`#filters [name="${k}"]`, (e, val) => { e.value = val; }, v);
	await page.click('#apply');
}

const browser = await puppeteer.launch({
	executablePath: '/usr/bin/chromium', headless: true, acceptInsecureCerts: true,
	args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
try {
	const page = await newPage(browser);
	// 0. A deep link without a token: the login page, and no API call made.
	await page.goto(spec.url + '/#inventory', { waitUntil: 'networkidle0' });
	out.deep_link = await page.evaluate(() => ({ app_hidden: document.querySelector('#app').hidden,
		login_visible: !document.querySelector('#login').hidden,
		rows: document.querySelectorAll('tbody tr').length }));
	out.api_before_login = out.responses.filter((r) => r.url.includes('/api/')).length;
	// A metrics token is refused by the console and not kept.
	await login(page, spec.metrics);
	await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0, { timeout: 10000 });
	out.metrics_login = await page.evaluate(() => ({ error: document.querySelector('#login-error').textContent,
		kept: sessionStorage.getItem('vigil.token'), app_hidden: document.querySelector('#app').hidden }));
	// 1. The login page, then a wrong token stays there.
	await login(page, 'not-a-token-0123456789');
	await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0, { timeout: 10000 });
	out.wrong_token_app_hidden = await page.$eval('#app', (e) => e.hidden);
	out.steps.push('wrong token refused');

	// 2. Admin logs in: events appear.
	await page.type('#token', spec.admin);
	await page.click('#login-button');
	await waitRows(page, '#events-table', 'rows.length > 0', 'events after login');
	out.who = await page.$eval('#who', (e) => e.textContent);
	out.steps.push('logged in');

	// 3. Filter: the real agent's blocked requests of user nobody.
	await setFilters(page, { user: spec.user, kind: 'request', action: 'block', since: '1h' });
	out.blocked_rows = await waitRows(page, '#events-table', `rows.every(r => r[7] === "block" && r[1] === ${JSON.stringify(spec.user)})`,
		'blocked filter');
	out.steps.push('filtered');

	// 4. Open one: detail view with findings, decision, identity, chain.
	await page.click('#events-table tbody tr');
	await page.waitForFunction(() => document.querySelector('#ev-chain').children.length > 0, { timeout: 10000 });
	const dl = (id) => page.$eval(id, (d) => {
		const o = {};
		const k = [...d.querySelectorAll('dt')], v = [...d.querySelectorAll('dd')];
		k.forEach((dt, i) => { o[dt.textContent] = v[i].textContent; });
		return o;
	});
	out.detail = { decision: await dl('#ev-decision'), identity: await dl('#ev-identity'), chain: await dl('#ev-chain'),
		findings: await page.$$eval('#ev-findings tbody tr', (t) => t.map((tr) => [...tr.cells].map((c) => c.textContent))),
		url: page.url() };
	out.detail_has_key = (await page.content()).includes(spec.key);
	out.steps.push('event detail');

	// 5. Paging over the generated events: 3 pages of 50, none repeated.
	await page.goto(spec.url + '/#events', { waitUntil: 'load' });
	await waitRows(page, '#events-table', 'rows.length > 0', 'events view');
	await setFilters(page, { agent: spec.gen_agent, limit: '50' });
	const seen = [];
	let rows = await waitRows(page, '#events-table', 'rows.length === 50', 'page 1');
	seen.push(...rows.map((r) => r[0] + r[3]));
	const first = JSON.stringify(rows);
	for (let p = 2; p <= 3; p++) {
		const before = JSON.stringify(rows);
		await page.click('#older');
		await page.waitForFunction((b) => JSON.stringify([...document.querySelectorAll('#events-table tbody tr')]
			.map((tr) => [...tr.cells].map((td) => td.textContent))) !== b, { timeout: 10000 }, before);
		rows = await page.$$eval('#events-table tbody tr', (t) => t.map((tr) => [...tr.cells].map((c) => c.textContent)));
		seen.push(...rows.map((r) => r[0] + r[3]));
	}
	out.paging = { seen: seen.length, distinct: new Set(seen).size, older_disabled: await page.$eval('#older', (b) => b.disabled),
		status: await page.$eval('#events-status', (e) => e.textContent) };
	await page.click('#newest');
	await page.waitForFunction((f) => JSON.stringify([...document.querySelectorAll('#events-table tbody tr')]
		.map((tr) => [...tr.cells].map((td) => td.textContent))) === f, { timeout: 10000 }, first);
	out.steps.push('paged');

	// 6. A program named like markup is shown as text.
	await setFilters(page, { exe: spec.xss_exe, limit: '100' });
	const x = await waitRows(page, '#events-table', `rows.length === 1 && rows[0][3] === ${JSON.stringify(spec.xss_exe)}`,
		'events of the <img> program');
	out.xss = { cell: x[0][3], fired: await page.evaluate(() => window.__xss || null),
		imgs: await page.evaluate(() => document.querySelectorAll('img').length) };
	out.steps.push('markup as text');

	// 7. Top, alerts, agents, verify.
	await page.goto(spec.url + '/#top', { waitUntil: 'load' });
	out.top = await waitRows(page, '#top-table', 'rows.length > 0', 'top users');
	await page.goto(spec.url + '/#alerts', { waitUntil: 'load' });
	out.alerts = await waitRows(page, '#alerts-table', 'rows.length > 0', 'alerts');
	await page.goto(spec.url + '/#agents', { waitUntil: 'load' });
	out.agents = await waitRows(page, '#agents-table', `rows.some(r => r[0] === ${JSON.stringify(spec.agent)})`, 'agents');
	await page.goto(spec.url + '/#verify', { waitUntil: 'load' });
	await page.click('#verify-run');
	await page.waitForFunction(() => /INTACT|BROKEN/.test(document.querySelector('#verify-status').textContent),
		{ timeout: 60000 });
	out.verify = { status: await page.$eval('#verify-status', (e) => e.textContent),
		text: await page.$eval('#verify-out', (e) => e.textContent) };
	out.steps.push('top alerts agents verify');

	// 8. Inventory: approve the curl program with openai; see the audit row.
	await page.goto(spec.url + '/#inventory', { waitUntil: 'load' });
	out.inventory = await waitRows(page, '#inventory-table',
		`rows.some(r => r[1] === ${JSON.stringify(spec.block_exe)} && r[2] === "openai")`, 'inventory');
	const idx = out.inventory.findIndex((r) => r[1] === spec.block_exe && r[2] === 'openai');
	await page.click(`#inventory-table tbody tr:nth-child(${idx + 1}) button.review-approved`);
	out.inventory_after = await waitRows(page, '#inventory-table',
		`rows.some(r => r[1] === ${JSON.stringify(spec.block_exe)} && r[2] === "openai" && r[12] === "approved")`, 'approved');
	out.reviews = await waitRows(page, '#reviews-table', 'rows.length > 0', 'review audit rows');
	out.steps.push('approved');
	await collectCsp(page);
	await page.click('#logout');
	out.after_logout = await page.evaluate(() => ({ token: sessionStorage.getItem('vigil.token'),
		login: !document.querySelector('#login').hidden }));

	// 9. An analyst: no review buttons; a forged review from the page gets 403.
	const p2 = await newPage(browser);
	await login(p2, spec.analyst);
	await waitRows(p2, '#events-table', 'rows.length > 0', 'analyst events');
	await p2.goto(spec.url + '/#inventory', { waitUntil: 'load' });
	await waitRows(p2, '#inventory-table', 'rows.length > 0', 'analyst inventory');
	out.analyst_buttons = await p2.$$eval('#inventory-table button', (b) => b.length);
	out.analyst_post = await p2.evaluate(async (exe) => {
		const r = await fetch('/api/v1/review?' + new URLSearchParams({ exe, provider: 'openai', state: 'unapproved' }),
			{ method: 'POST', headers: { Authorization: 'Bearer ' + sessionStorage.getItem('vigil.token') } });
		return r.status;
	}, spec.block_exe);
	await collectCsp(p2);
	out.steps.push('analyst cannot approve');
} catch (e) {
	out.error = String(e && e.stack || e);
} finally {
	await browser.close();
}
console.log(JSON.stringify(out));
