// Times the console's events view in headless chromium (tests/bench/console_bench.py).
// argv[2]: JSON {url, token, filters: [{name, params}]}. Prints one JSON line:
// login to first page drawn, the next (older) page, and each filter, in ms.
import puppeteer from 'puppeteer-core';

const spec = JSON.parse(process.argv[2]);
const out = {};
const browser = await puppeteer.launch({
	executablePath: '/usr/bin/chromium', headless: true, acceptInsecureCerts: true,
	args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'],
});
// Resolves when console.js marks a drawn events page newer than t.
const drawn = (page, t) => page.waitForFunction((since) => Number(document.body.dataset.eventsLoaded || 0) > since,
	{ timeout: 120000, polling: 5 }, t);
try {
	const page = await browser.newPage();
	await page.goto(spec.url + '/', { waitUntil: 'load' });
	await page.type('#token', spec.token);
	let t = Date.now();
	await page.click('#login-button');
	await drawn(page, t - 1);
	out.first_page_ms = Date.now() - t;
	out.rows = await page.$$eval('#events-table tbody tr', (r) => r.length);
	t = Date.now();
	await page.click('#older');
	await drawn(page, t - 1);
	out.older_page_ms = Date.now() - t;
	for (const f of spec.filters) {
		await page.$$eval('#filters input', (ins) => ins.forEach((i) => { i.value = ''; }));
		for (const [k, v] of Object.entries(f.params))
			await page.$eval(`#filters [name="${k}"]`, (e, val) => { e.value = val; }, v);
		t = Date.now();
		await page.click('#apply');
		await drawn(page, t - 1);
		out[f.name + '_ms'] = Date.now() - t;
		out[f.name + '_rows'] = await page.$$eval('#events-table tbody tr', (r) => r.length);
	}
} catch (e) {
	out.error = String(e && e.stack || e);
} finally {
	await browser.close();
}
console.log(JSON.stringify(out));
