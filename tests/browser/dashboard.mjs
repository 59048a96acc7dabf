// Drives Debian's chromium against the agent's dashboard. Usage:
//   node dashboard.mjs URL_WITHOUT_TOKEN URL_WITH_TOKEN SCREENSHOT_PATH
// Prints READY once the page is live (the Rust test then causes alerts), then checks that
// they appear without a reload, that hostile text stays text, that pause without the token
// is refused and that pause with it is accepted. Exits non-zero on any failure.
import { chromium } from "playwright-core";

const [plainUrl, tokenUrl, screenshot] = process.argv.slice(2);
const say = (line) => process.stdout.write(line + "\n");

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  await page.goto(plainUrl);
  await page.waitForSelector("body[data-ready='1']", { timeout: 15000 });
  say("READY");

  const feed = page.locator("#feed li");
  await feed.filter({ hasText: "Suspicious process detected" }).first().waitFor({ timeout: 20000 });
  await feed.filter({ hasText: "<script>window.pwned=1</script>" }).first().waitFor({ timeout: 20000 });
  if (await page.evaluate(() => window.pwned !== undefined)) throw new Error("a log line ran as script");
  say("ALERTS_SHOWN");

  await page.click("#pause");
  await page.locator("#control-message", { hasText: "refused (401)" }).waitFor({ timeout: 10000 });
  say("UNAUTHENTICATED_REFUSED");

  await page.goto(tokenUrl);
  await page.waitForSelector("body[data-ready='1']", { timeout: 15000 });
  await page.click("#pause");
  await page.locator("#control-message", { hasText: "pause: done" }).waitFor({ timeout: 10000 });
  await page.locator("#state", { hasText: "paused" }).waitFor({ timeout: 10000 });
  await page.screenshot({ path: screenshot });
  say("PAUSED");
} catch (error) {
  say("FAILED " + error.message.split("\n")[0]);
  process.exitCode = 1;
} finally {
  await browser.close();
}
