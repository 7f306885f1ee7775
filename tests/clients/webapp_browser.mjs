// Drives Debian's chromium, or firefox-esr when VIGIL_BROWSER=firefox (over
// WebDriver BiDi; the profile is VIGIL_FIREFOX_PROFILE, whose cert9.db
// decides what it trusts), headless, through the fake chat web apps for
// tests/e2e/test_webapps.py: node webapp_browser.mjs STEPS.json
// Steps: {"type":"chat","url","prompt"} types the prompt and presses Send,
// waits for the answer; {"type":"upload","url","name","mime","b64"} attaches
// a file as the app does; {"type":"fetch","url"} fetches a URL from the page
// and gives its SHA-256; {"type":"load","url","n"} loads the page n times,
// each in a fresh browser context (new connections), and gives the load
// times in ms (after one warm-up load). Prints one JSON line: the results, in order.
import fs from 'node:fs';
import puppeteer from 'puppeteer-core';

const steps = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const rules = process.env.VIGIL_RESOLVER_RULES || '';
const firefox = process.env.VIGIL_BROWSER === 'firefox';
const browser = await puppeteer.launch(firefox ? {
  browser: 'firefox',
  executablePath: '/usr/bin/firefox-esr',
  headless: true,
  // an existing profile: puppeteer adds its automation prefs to user.js and
  // keeps the NSS database (cert9.db) the test prepared. Names resolve
  // through /etc/hosts (no --host-resolver-rules in Firefox); no DoH.
  userDataDir: process.env.VIGIL_FIREFOX_PROFILE,
  extraPrefsFirefox: { 'network.trr.mode': 5, 'security.enterprise_roots.enabled': false },
} : {
  executablePath: '/usr/bin/chromium',
  headless: true,
  userDataDir: process.env.HOME + '/chromium-profile',
  args: ['--no-first-run', '--disable-gpu', '--disable-dev-shm-usage', '--disable-extensions',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         ...(process.env.VIGIL_NO_SANDBOX ? ['--no-sandbox'] : []),
         ...(rules ? ['--host-resolver-rules=' + rules] : [])],
});
const out = [];
try {
  for (const s of steps) {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(20000);
    try {
      if (s.type === 'load') {
        const times = [];
        await ctx.close();
        for (let i = -1; i < s.n; i++) {   // i = -1: a warm-up load, not counted
          const c = await browser.createBrowserContext();
          const p = await c.newPage();
          const t0 = performance.now();
          await p.goto(s.url, { waitUntil: 'load' });
          if (i >= 0) times.push(performance.now() - t0);
          await c.close();
        }
        out.push({ times });
        continue;
      }
      const resp = await page.goto(s.page || s.url, { waitUntil: 'load' });
      if (s.type === 'chat') {
        await page.type('#prompt', s.prompt);
        await page.click('#send');
        await page.waitForSelector('body[data-state="done"]');
        out.push(await page.evaluate(() => ({ answer: document.querySelector('#answer').textContent,
                                              status: Number(document.body.dataset.status) })));
      } else if (s.type === 'upload') {
        out.push(await page.evaluate((n, m, b) => upload(n, m, b), s.name, s.mime, s.b64));
      } else if (s.type === 'fetch') {
        out.push(await page.evaluate(async (u) => {
          const r = await fetch(u);
          const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await r.arrayBuffer()));
          return { status: r.status, sha256: Array.from(d, x => x.toString(16).padStart(2, '0')).join('') };
        }, s.url));
      } else {
        out.push({ status: resp ? resp.status() : 0, title: await page.title() });
      }
    } catch (e) {
      // a step marked tolerate may fail (a first connection refused by the guard)
      out.push(s.tolerate ? { failed: String(e).slice(0, 200) } : { error: String(e).slice(0, 400) });
    }
    await ctx.close().catch(() => {});
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
