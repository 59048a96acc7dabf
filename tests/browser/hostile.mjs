// Hostile alert text in Debian's chromium: markup a container wrote (in a log line, in a
// process path) must show as text in the feed and never run. Usage:
//   node hostile.mjs DASHBOARD_URL PAYLOAD...
// Prints READY once the page is live (the Rust test then makes the container write the
// payloads), then INERT once every payload is visible as text and none of them ran.
// Exits non-zero on any failure.
import { chromium } from "playwright-core";

const [url, ...payloads] = process.argv.slice(2);
const say = (line) => process.stdout.write(line + "\n");

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  if (payloads.length === 0) throw new Error("no payloads given");
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  let dialogs = 0;
  page.on("dialog", (dialog) => { dialogs += 1; dialog.dismiss(); });
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 15000 });
  say("READY");

  const feed = page.locator("#feed li");
  // Had any alert text been parsed as HTML, its elements would be in the feed.
  const checkInert = async () => {
    const injected = await page.locator("#feed script, #feed img, #feed b, #feed [onerror]").count();
    if (injected !== 0) throw new Error(`${injected} elements from alert text in the feed`);
    const pwned = await page.evaluate(() => window.pwned);
    if (pwned !== undefined) throw new Error(`alert text ran as script (window.pwned=${pwned})`);
  };
  for (const payload of payloads) {
    const item = feed.filter({ hasText: payload }).first();
    try {
      await item.waitFor({ state: "visible", timeout: 20000 });
    } catch (error) {
      await checkInert();
      throw new Error(`not shown as text: ${payload}: ${error.message}`);
    }
  }
  await checkInert();
  // Defence in depth: the page's CSP forbids inline handlers, so even markup that got into
  // the DOM could not run. The handler attribute would run before this listener.
  const probe = await page.evaluate(() => new Promise((resolve) => {
    const img = document.createElement("img");
    img.setAttribute("onerror", "window.cspProbe = 1");
    img.addEventListener("error", () => { resolve(window.cspProbe); img.remove(); });
    img.src = "no-such-image";
    document.body.append(img);
  }));
  if (probe !== undefined) throw new Error("the page's CSP allows inline event handlers");
  if (dialogs !== 0) throw new Error(`${dialogs} dialogs opened`);
  say("INERT");
} catch (error) {
  say("FAILED " + error.message.split("\n")[0]);
  process.exitCode = 1;
} finally {
  await browser.close();
}
