// Drive an exported web page in headless Chromium (puppeteer-core, the
// system browser): predict each image, optionally benchmark and take a
// screenshot, print one JSON object. Called by tests/web_page.py.
//
//   node drive.mjs '{"chromium": "/usr/bin/chromium", "url": "http://...", "images": ["cat.bmp"],
//                    "runs": 0, "screenshot": "page.png"}'

import puppeteer from "puppeteer-core";

const job = JSON.parse(process.argv[2]);
const browser = await puppeteer.launch({
  executablePath: job.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
const out = { console: [], results: [], timings: [] };
try {
  const page = await browser.newPage();
  await page.setViewport({ width: job.width ?? 1000, height: job.height ?? 640 });
  page.on("console", (message) => out.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => out.console.push(`pageerror: ${error.message}`));
  await page.goto(job.url, { waitUntil: "load", timeout: 60000 });
  await page.waitForFunction("window.mobilenetv3 !== undefined", { timeout: 60000 });
  out.backend = await page.evaluate(() => window.mobilenetv3.ready);
  for (const image of job.images) {
    out.results.push(await page.evaluate((url) => window.mobilenetv3.predict(url), image));
  }
  out.timings = await page.evaluate(() => window.timings);
  out.dom = await page.evaluate(() => document.getElementById("results").innerText);
  if (job.runs) out.benchmark_ms = await page.evaluate((n) => window.mobilenetv3.benchmark(n), job.runs);
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
} catch (error) {
  out.error = String(error.stack ?? error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
