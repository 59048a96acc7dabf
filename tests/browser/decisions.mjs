// Drives Debian's chromium against the agent's dashboard: the pending decision ID is
// listed, and its Approve button answers it. Usage:
//   node decisions.mjs URL_WITH_TOKEN DECISION_ID
// Prints LISTED, then APPROVED once the agent's answer is shown and the row is gone.
// Exits non-zero on any failure.
import { chromium } from "playwright-core";

const [tokenUrl, id] = process.argv.slice(2);
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
  await page.goto(tokenUrl);
  await page.waitForSelector("body[data-ready='1']", { timeout: 15000 });
  const row = page.locator(`#pending li[data-id="${id}"]`);
  await row.waitFor({ timeout: 15000 });
  say("LISTED");
  await row.locator("button.approve").click();
  await page.locator("#control-message", { hasText: `decision ${id} approve:` }).waitFor({ timeout: 15000 });
  await row.waitFor({ state: "detached", timeout: 15000 });
  say("APPROVED");
} catch (error) {
  say("FAILED " + error.message.split("\n")[0]);
  process.exitCode = 1;
} finally {
  await browser.close();
}
