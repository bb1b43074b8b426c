// The console in headless Chromium against `edgefleet demo` (server + simulated fleet) on loopback.
// Every step saves a screenshot under e2e/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const binary = process.env.EDGEFLEET_BIN || join(root, "target/debug/edgefleet");
const shots = join(here, "screenshots");
const password = "e2e-password-123";
let demo, browser, page, base, simBase, dataDir, step = 0;
// What the console asked with confirm() (every question is accepted).
const asked = [];

async function shot(name) {
  step += 1;
  await page.screenshot({ path: join(shots, `${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), "edgefleet-e2e-"));
  demo = spawn(binary, ["demo", "--listen", "127.0.0.1:0", "--sim-listen", "127.0.0.1:0", "--jwt-sim-listen", "127.0.0.1:0", "--agent-sim-listen", "127.0.0.1:0", "--no-delivery", "--data-dir", join(dataDir, "demo")], {
    env: { ...process.env, EDGEFLEET_ADMIN_PASSWORD: password, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  base = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${out}`)), 120000);
    demo.stdout.on("data", (chunk) => {
      out += chunk;
      const url = out.match(/console and API\s+(http:\/\/[\d.:]+)\//);
      const fleet = out.match(/simulated fleet\s+\d+ NeuronEX instances at (http:\/\/[\d.:]+)\/i\//);
      if (url && fleet && out.includes("try it from another terminal")) { clearTimeout(timer); simBase = fleet[1]; resolve(url[1]); }
    });
    demo.on("exit", (code) => reject(new Error(`demo exited with ${code}:\n${out}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 }, acceptDownloads: true });
  page.on("dialog", (d) => { asked.push(d.message()); d.accept(); });
  // A script error in the console is printed, so a failing step shows its cause.
  page.on("pageerror", (error) => console.error(`console script error: ${error.stack || error}`));
});

after(async () => {
  await browser?.close();
  demo?.kill("SIGKILL");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// The wizard's targets step narrowed by tag and version, once the table shows `rows` of them.
async function filterTargets({ tag, version }, rows) {
  await page.fill('#target-filters input[name="tag"]', tag);
  await page.fill('#target-filters input[name="version"]', version);
  await page.click('#target-filters button[type="submit"]');
  await page.waitForFunction((n) => document.querySelectorAll("#targets tbody tr").length === n, rows);
}

const api = (path, init) => page.evaluate(async ([path, init]) => (await fetch(path, init)).json(), [path, init]);

test("log in and see the fleet with status, versions and tags", async () => {
  await page.goto(`${base}/`);
  await page.fill('input[name="username"]', "admin");
  await page.fill('input[name="password"]', password);
  await shot("login");
  await page.click('button[type="submit"]');
  // The first page of the 52 demo gateways. The table may be drawn more than once while the page
  // loads, so the count is awaited (a timeout fails the test), not read once.
  await page.waitForFunction(() => document.querySelectorAll("#edge-table tbody tr").length === 50, null, { timeout: 30000 });
  await page.fill('#edge-filters input[name="tag"]', "zone-a");
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#edge-table tbody tr").length === 12);
  await shot("edge-services-filtered-by-tag");
  // The demo's gateways behind NAT, reached through their agents (the machine's broker).
  await page.fill('#edge-filters input[name="tag"]', "zone-agent");
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll("#edge-table tbody tr")].filter((row) => row.textContent.includes("via agent")).length === 3);
  await shot("edge-services-behind-agents");
  await page.fill('#edge-filters input[name="tag"]', "zone-a");
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#edge-table tbody tr").length === 12);
});

test("upload a rule template from an upstream file, then edit it (a new version)", async () => {
  await page.click('a[href="#/config"]');
  await page.click("#new-template-button");
  await page.setInputFiles('#template-form input[name="file"]', join(root, "fixtures/upstream/ekuiper_data_import_streams_rules_sourceconfig.json"));
  await page.waitForFunction(() => document.querySelector('#template-form [name="content"]').value.includes("simup"));
  await page.fill('#template-form input[name="name"]', "line-rules");
  await shot("new-template");
  await page.click('#template-form button[type="submit"]');
  const row = page.locator("tr", { hasText: "line-rules" });
  await row.waitFor();
  await row.locator('[data-act="edit"]').click();
  const textarea = page.locator('.dialog textarea[name="content"]');
  await textarea.fill((await textarea.inputValue()).replace("sim/old1", "sim/edited-v2"));
  await shot("edit-template");
  await page.click('.dialog button[type="submit"]');
  await page.waitForSelector("text=Saved as version 2.");
  await shot("template-version-2");
});

test("deliver with an edit for this delivery only, to targets filtered by tag and version", async () => {
  await page.locator("tr", { hasText: "line-rules" }).locator('[data-act="deliver"]').click();
  const content = page.locator('#wizard-body textarea[name="content"]');
  await content.fill((await content.inputValue()).replace("SELECT a FROM simup", "SELECT a, b FROM simup"));
  await shot("wizard-1-content");
  // line-rules has no parameters: no step for them.
  assert.deepEqual(await page.locator(".steps span").allTextContents(), ["1. Content", "2. Targets", "3. Execute"]);
  await page.click("#wiz-next");
  // By tag and version first: the three 2.9.0 gateways of zone-d; one checkbox selects one.
  await filterTargets({ tag: "zone-d", version: "2.9" }, 3);
  await page.locator('#targets input[type="checkbox"][data-id]').first().check();
  await page.waitForSelector("text=1 selected");
  // Then all of zone-d, whatever the version.
  await page.fill('#target-filters input[name="version"]', "");
  await page.click('#target-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#targets tbody tr").length === 12);
  await page.click("#select-all");
  await page.waitForSelector("text=All 12 matching edge services are selected.");
  await shot("wizard-3-targets");
  await page.click("#wiz-next");
  await page.fill('#wizard-body input[name="timeout_secs"]', "10");
  // Warned before Execute: zone-d's gateway the prober found offline, and its three 2.9.0 ones.
  await page.waitForSelector("#warn-old");
  assert.match(await page.textContent("#warn-old"), /^3 run NeuronEX older than 3\.0\.0/);
  assert.match(await page.textContent("#warn-offline"), /^1 of the chosen edge services were offline/);
  await shot("wizard-4-execute");
  await page.click("#wiz-next");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "partial", null, { timeout: 60000 });
  assert.equal(await page.textContent("#c-total"), "12");
  assert.equal(await page.textContent("#c-ok"), "8");
  assert.equal(await page.textContent("#c-failed"), "4");
  await page.waitForFunction(() => document.querySelectorAll('#result-table tr[data-status="failed"] .bang').length === 4);
  // The table is read again once the final event came: wait for that read, not for an earlier one.
  await page.waitForFunction(() => document.querySelectorAll('#result-table tr[data-status="succeeded"] .dot.succeeded').length === 8);
  assert.equal(await page.locator('#result-table tr[data-status="succeeded"] .dot.succeeded').count(), 8);
  const reasons = await page.locator('#result-table tr[data-status="failed"] td:last-child').allTextContents();
  // Each failure leads with its code in words (the console's language), then the server's reason.
  assert.equal(reasons.filter((r) => r.startsWith("Stopped by edgefleet: version gate: NeuronEX 2.9.0 is older than 3.0.0")).length, 3, reasons.join("\n"));
  // The gateway that drops connections was found offline by the prober: one quick check, no retries.
  assert.equal(reasons.filter((r) => r.includes(": offline since ") && r.includes("read version: connection closed without an answer")).length, 1, reasons.join("\n"));
  assert.equal(await page.locator("#retry").isVisible(), true, "Retry is offered once it ended with failures");
  assert.equal(await page.locator("#cancel").isVisible(), false, "Cancel is not offered on a finished delivery");
  await page.check("#only-failures");
  await page.waitForFunction(() => document.querySelectorAll("#result-table tbody tr").length === 4);
  await shot("delivery-result");
  // The dropped connections are fixed; a retry turns that row green, and no row keeps an old reason.
  const fixed = await fetch(`${simBase}/__sim/instances/7/faults`, { method: "PUT", body: "{}" });
  assert.equal(fixed.status, 200);
  await page.uncheck("#only-failures");
  await page.click("#retry");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "partial" && document.querySelector("#c-ok")?.textContent === "9", null, { timeout: 60000 });
  assert.equal(await page.textContent("#c-failed"), "3");
  await page.waitForFunction(() => document.querySelectorAll('#result-table tr[data-status="succeeded"]').length === 9);
  const after = await page.locator('#result-table tbody tr').evaluateAll((rows) => rows.map((r) => [r.dataset.status, r.lastElementChild.textContent]));
  assert.deepEqual(after.filter(([status, reason]) => status === "succeeded" && reason !== ""), [], "a succeeded row shows no reason");
  assert.equal(after.filter(([status, reason]) => status === "failed" && reason.startsWith("Stopped by edgefleet: version gate: NeuronEX 2.9.0")).length, 3);
  await shot("delivery-retried");
  await page.click(".dialog [data-close]");
  // The template kept its own content: the edit was for this delivery only.
  const templates = await api(`/api/v1/projects/${await page.inputValue("#project")}/templates`);
  const template = templates.items.find((t) => t.name === "line-rules");
  assert.equal(template.current_version, 2);
  const stored = await api(`/api/v1/projects/${await page.inputValue("#project")}/templates/${template.id}`);
  assert.match(JSON.stringify(stored.content), /SELECT a FROM simup/);
  assert.doesNotMatch(JSON.stringify(stored.content), /SELECT a, b FROM simup/);
});

test("export the template as a file", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("tr", { hasText: "line-rules" }).locator('[data-act="export"]').click()]);
  assert.equal(download.suggestedFilename(), "line-rules-v2.json");
  const text = readFileSync(await download.path(), "utf8");
  assert.match(text, /sim\/edited-v2/);
});

test("upload a plugin (a duplicate is refused next to the field) and deliver it", async () => {
  await page.click('[data-tab="plugins"]');
  await page.fill('#plugin-form input[name="name"]', "vibration");
  await page.setInputFiles('#plugin-form input[name="file"]', join(root, "crates/edgefleet/samples/vibration.zip"));
  await page.click('#plugin-form button[type="submit"]');
  await page.waitForSelector('#plugin-form [role="alert"]');
  assert.match(await page.textContent('#plugin-form [role="alert"]'), /identical to plugin `vibration`/);
  await shot("plugin-duplicate-refused");
  await page.fill('#plugin-form input[name="name"]', "pysam");
  await page.setInputFiles('#plugin-form input[name="file"]', join(here, "fixtures/pysam.zip"));
  await page.click('#plugin-form button[type="submit"]');
  await page.waitForSelector("text=Plugin pysam uploaded.");
  await page.locator("tr", { hasText: "pysam" }).locator('[data-act="deliver"]').click();
  await page.fill('#target-filters input[name="tag"]', "zone-c");
  await page.click('#target-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#targets tbody tr").length === 12);
  await page.click("#select-all");
  await page.click("#wiz-next");
  await page.click("#wiz-next");
  await page.waitForFunction(() => ["succeeded", "partial"].includes(document.querySelector("#c-state")?.dataset.state), null, { timeout: 60000 });
  assert.equal(await page.textContent("#c-total"), "12");
  assert.equal(await page.textContent("#c-ok"), "12");
  await shot("plugin-delivery-result");
  await page.click(".dialog [data-close]");
});

test("find both deliveries in the history and in the operation audit", async () => {
  await page.click('a[href="#/deliveries"]');
  // Wait for the history page itself, not the table of the page before it.
  await page.waitForSelector('h1:has-text("Delivery history")');
  await page.waitForFunction(() => document.querySelectorAll("main table tbody tr").length === 2);
  await shot("delivery-history");
  // Narrowed by what was delivered, then by a state none of them is in.
  await page.fill('#history-filters input[name="template"]', "pysam");
  await page.click('#history-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("main table tbody tr").length === 1);
  assert.match(await page.textContent("main table tbody tr"), /pysam/);
  await page.selectOption('#history-filters select[name="state"]', "aborted");
  await page.click('#history-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("main table tbody tr").length === 0);
  await page.click('a[href="#/audit"]');
  await page.waitForSelector('h1:has-text("Operation audit")');
  await page.fill('#audit-filters input[name="action"]', "delivery.start");
  await page.click('#audit-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#audit-table tbody tr").length === 2);
  const rows = await page.locator("#audit-table tbody tr").allTextContents();
  assert.ok(rows.some((r) => r.includes("line-rules")) && rows.some((r) => r.includes("pysam")), rows.join("\n"));
  // Actions and outcomes read as words; the action's name is in the cell's tooltip.
  assert.ok(rows.every((r) => r.includes("Delivery started") && r.includes("Success")), rows.join("\n"));
  assert.equal(await page.getAttribute("#audit-table tbody tr td:nth-child(3)", "title"), "delivery.start");
  // Details read as lines, none wider than its column; a delivery's row opens its result.
  const details = await page.locator("#audit-table tbody tr").first().locator(".audit-details div").allTextContents();
  assert.ok(details.some((d) => d.startsWith("targets: ")), details.join("\n"));
  assert.ok(details.every((d) => d.length <= 120), details.join("\n"));
  await shot("audit");
  await page.locator("#audit-table tbody tr", { hasText: "line-rules" }).locator("button[data-result]").click();
  await page.waitForFunction(() => document.querySelector("#c-total")?.textContent === "12");
  assert.match(await page.textContent(".dialog h2"), /line-rules/);
  await page.click(".dialog [data-close]");
});

test("preview a plan, carry it out, then roll it back", async () => {
  await page.click('a[href="#/config"]');
  await page.locator("tr", { hasText: "line-rules" }).locator('[data-act="deliver"]').click();
  await page.click("#wiz-next");
  await filterTargets({ tag: "zone-a", version: "3.7" }, 3);
  await page.click("#select-all");
  await page.click("#wiz-next");
  await page.click("#wiz-plan");
  await page.waitForSelector("#plan-summary", { timeout: 60000 });
  const summary = await page.textContent("#plan-summary");
  assert.match(summary, /^\d+ to create, 0 to update, 0 unchanged, 0 in conflict, 0 incompatible; 0 targets not read$/, summary);
  assert.equal(await page.locator(".plan-group").count(), 1, "three gateways with the same changes are one group");
  assert.match(await page.textContent(".plan-group summary"), /^3 targets: /);
  await shot("wizard-plan");
  await page.click("#wiz-next");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "succeeded", null, { timeout: 60000 });
  assert.equal(await page.textContent("#c-ok"), "3");
  assert.equal(await page.locator("#rollback").isVisible(), true, "Roll back is offered once it ended");
  await shot("plan-applied");
  await page.click("#rollback");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "succeeded" && document.querySelector("h2")?.textContent.includes("line-rules"), null, { timeout: 60000 });
  await page.waitForFunction(() => document.querySelectorAll('#result-table tr[data-status="succeeded"]').length === 3);
  await shot("rolled-back");
  await page.click(".dialog [data-close]");
  await page.click('a[href="#/deliveries"]');
  await page.waitForSelector('h1:has-text("Delivery history")');
  await page.waitForFunction(() => [...document.querySelectorAll("main tbody .tag")].some((t) => t.textContent === "rollback"));
  await shot("history-with-plan-and-rollback");
});

test("a canary rollout with a manual gate: the wave bar, Resume, and the waves in the history", async () => {
  await page.click('a[href="#/config"]');
  await page.locator("tr", { hasText: "line-rules" }).locator('[data-act="deliver"]').click();
  await page.click("#wiz-next");
  await page.fill('#target-filters input[name="tag"]', "zone-a");
  await page.click('#target-filters button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll("#targets tbody tr").length > 3);
  await page.click("#select-all");
  await page.click("#wiz-next");
  await page.selectOption('select[name="rollout"]', "custom");
  await page.fill('input[name="waves"]', "2,rest");
  await page.selectOption('select[name="gate"]', "manual");
  await shot("wizard-rollout");
  await page.click("#wiz-next");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "paused", null, { timeout: 60000 });
  assert.equal(await page.locator(".wave-bar .wave").count(), 2);
  assert.match(await page.textContent(".wave-bar .current"), /^Wave 1 \(2\)$/);
  assert.equal(await page.textContent("#c-ok"), "2", "only the first wave ran");
  await page.waitForFunction(() => document.querySelectorAll('#result-table tr[data-status="succeeded"]').length === 2);
  assert.equal(await page.locator('[data-control="resume"]').isVisible(), true);
  await shot("rollout-paused-at-gate");
  await page.click('[data-control="resume"]');
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "succeeded", null, { timeout: 60000 });
  assert.equal(await page.locator("[data-control]").count(), 0, "no controls once it ended");
  await page.waitForFunction(() => /^Wave 2 /.test(document.querySelector(".wave-bar .current")?.textContent ?? ""));
  await shot("rollout-done");
  await page.click(".dialog [data-close]");
  await page.click('a[href="#/deliveries"]');
  await page.waitForFunction(() => [...document.querySelectorAll("main tbody .tag")].some((t) => t.textContent === "wave 2 of 2"));
});

test("maintenance windows and the project's approvals on the rollouts page", async () => {
  await page.click('a[href="#/rollouts"]');
  await page.waitForSelector("#new-window");
  await page.fill('#new-window input[name="name"]', "saturday-night");
  await page.fill('#new-window input[name="tag"]', "zone-a");
  await page.fill('#new-window input[name="cron"]', "0 2 * * 6");
  await page.fill('#new-window input[name="timezone"]', "Asia/Shanghai");
  await page.click('#new-window button[type="submit"]');
  await page.waitForSelector('#windows tr:has-text("saturday-night")');
  assert.match(await page.textContent('#windows tr:has-text("saturday-night")'), /zone-a.*0 2 \* \* 6.*120.*Asia\/Shanghai/);
  await page.fill('#new-window input[name="name"]', "broken");
  await page.fill('#new-window input[name="cron"]', "0 25 * * *");
  await page.click('#new-window button[type="submit"]');
  await page.waitForSelector("#new-window [role=alert]");
  assert.match(await page.textContent("#new-window [role=alert]"), /cron hour/);
  await page.fill('#approvals input[name="required"]', "2");
  await page.click('#approvals button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#approvals input[name="required"]')?.value === "2");
  assert.equal((await api(`/api/v1/projects/${await page.evaluate(() => localStorage.getItem("project"))}`)).approvals_required, 2);
  await shot("rollouts-page");
  await page.fill('#approvals input[name="required"]', "0");
  await page.click('#approvals button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#approvals input[name="required"]')?.value === "0");
});

test("drift: a rule changed on a gateway is found, shown as a patch and put back; inventory; a template from a gateway", async () => {
  const project = await page.evaluate(() => localStorage.getItem("project"));
  const P = (path) => `/api/v1/projects/${project}${path}`;
  const synced = await api(P("/edge-services?config_state=in_sync&limit=1"));
  const edge = synced.items[0];
  const report = await api(P(`/edge-services/${edge.id}/drift`));
  const rule = report.objects.find((o) => o.ref.kind === "rule").ref.id;
  // By hand on the gateway's own API: the rule reads something else.
  const live = await (await fetch(`${edge.endpoint}/api/ekuiper/rules/${rule}`)).json();
  const put = await fetch(`${edge.endpoint}/api/ekuiper/rules/${rule}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...live, sql: `${live.sql} WHERE 1 = 1` }) });
  assert.equal(put.status, 200);
  await page.click('a[href="#/edges"]');
  await page.fill('#edge-filters input[name="name"]', edge.name);
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForSelector(`#edge-table tr[data-id="${edge.id}"] [data-drift]`);
  await page.click(`#edge-table tr[data-id="${edge.id}"] [data-drift]`);
  await page.click("#drift-check");
  await page.waitForFunction(() => document.querySelector("#drift-state")?.dataset.state === "drifted");
  assert.match(await page.textContent('#drift-objects tr[data-drifted="true"]'), /replace \/sql/);
  await shot("drift-view");
  await page.click("#drift-reapply");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "succeeded", null, { timeout: 60000 });
  await page.click(".dialog [data-close]");
  assert.equal((await api(P(`/edge-services/${edge.id}/check`), { method: "POST", headers: { "x-edgefleet-csrf": "1" } })).state, "in_sync");
  await page.selectOption('#edge-filters select[name="config_state"]', "in_sync");
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForSelector(`#edge-table tr[data-id="${edge.id}"] .badge.in_sync`);
  await shot("edges-in-sync-after-reapply");
  await page.click('a[href="#/inventory"]');
  await page.selectOption('#inventory-filters select[name="kind"]', "rule");
  await page.fill('#inventory-filters input[name="name"]', rule);
  await page.click('#inventory-filters button[type="submit"]');
  await page.waitForSelector(`#inventory tr[data-name="${rule}"]`);
  await page.click(`#inventory tr[data-name="${rule}"] [data-show]`);
  await page.waitForFunction((name) => [...document.querySelectorAll("#inventory-edges li")].some((li) => li.textContent === name), edge.name);
  await shot("inventory");
  await page.click(".dialog [data-close]");
  await page.click('a[href="#/config"]');
  await page.click("#from-edge-button");
  await page.fill('#from-edge-form input[name="name"]', "taken-from-a-gateway");
  await page.fill('#from-edge-form input[name="edge"]', edge.name);
  await page.fill('#from-edge-form input[name="rules"]', rule);
  await page.click('#from-edge-form button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll("#tab tbody td")].some((td) => td.textContent === "taken-from-a-gateway"));
  await shot("template-from-a-gateway");
});

// Signs in as `username` in a fresh browser context; answers the page and its context.
async function signInAs(username, secret) {
  const context = await browser.newContext({ locale: "en-US", viewport: { width: 1360, height: 900 } });
  const other = await context.newPage();
  await other.goto(`${base}/`);
  await other.waitForSelector("#login-form");
  await other.fill('#login-form input[name="username"]', username);
  await other.fill('#login-form input[name="password"]', secret);
  await other.click('#login-form button[type="submit"]');
  return { context, other };
}

test("administration: project members, a user disabled and a password reset; hidden from who administers nothing", async () => {
  const user = "operator-1";
  await page.click('a[href="#/admin"]');
  await page.waitForSelector("#new-user");
  await page.fill('#new-user input[name="username"]', user);
  await page.fill('#new-user input[name="password"]', "operator-password-1");
  await page.click('#new-user button[type="submit"]');
  await page.waitForSelector(`#user-admin tr[data-name="${user}"]`);
  const operator = (await api("/api/v1/users?limit=1000")).items.find((u) => u.username === user);

  // Only the organization's members can join its projects: the server says so next to the form.
  await page.selectOption("#add-project-member select[name=user]", operator.id);
  await page.click('#add-project-member button[type="submit"]');
  await page.waitForSelector('#project-members [role="alert"]');
  await shot("admin-member-not-in-org");
  // A member of the organization (not a viewer of all its projects), then of this project.
  const orgForm = page.locator('form[data-form="member"]').first();
  await orgForm.locator("select[name=user]").selectOption(operator.id);
  await orgForm.locator("select[name=role]").selectOption("member");
  await orgForm.locator('button[type="submit"]').click();
  await page.waitForSelector(`td:has-text("${user} (Member)")`);
  await page.selectOption("#add-project-member select[name=user]", operator.id);
  await page.click('#add-project-member button[type="submit"]');
  await page.waitForSelector(`#project-members tr[data-name="${user}"]`);
  const project = await page.evaluate(() => localStorage.getItem("project"));
  const roleOf = async () => (await api(`/api/v1/projects/${project}/members`)).items.find((m) => m.username === user)?.role;
  assert.equal(await roleOf(), "viewer");
  await page.selectOption(`#project-members tr[data-name="${user}"] select[data-role]`, "admin");
  await page.waitForFunction((name) => document.querySelector(`#project-members tr[data-name="${name}"] select[data-role]`)?.value === "admin", user);
  assert.equal(await roleOf(), "admin");
  await shot("admin-project-members");
  await page.click(`#project-members tr[data-name="${user}"] [data-remove]`);
  await page.waitForFunction((name) => !document.querySelector(`#project-members tr[data-name="${name}"]`), user);
  assert.equal(await roleOf(), undefined);
  await page.selectOption("#add-project-member select[name=user]", operator.id);
  await page.click('#add-project-member button[type="submit"]');
  await page.waitForSelector(`#project-members tr[data-name="${user}"]`);

  // The viewer sees no Administration and only the project they belong to.
  let { context, other } = await signInAs(user, "operator-password-1");
  await other.waitForSelector("#nav a");
  assert.deepEqual(await other.$$eval("#nav a", (links) => links.map((a) => a.getAttribute("href"))).then((hrefs) => hrefs.includes("#/admin")), false);
  assert.equal(await other.$$eval("#project option", (options) => options.length), 1);
  await other.goto(`${base}/#/admin`);
  await other.waitForSelector("text=Your role does not include administration.");
  await other.screenshot({ path: join(shots, "98-viewer-without-administration.png"), fullPage: true });
  await context.close();

  // A new password works; a disabled user cannot sign in.
  const row = page.locator(`#user-admin tr[data-name="${user}"]`);
  await row.locator('input[name="password"]').fill("operator-password-2");
  await row.locator('[data-reset] button[type="submit"]').click();
  await row.locator('[role="status"]').waitFor();
  ({ context, other } = await signInAs(user, "operator-password-2"));
  await other.waitForSelector("#nav a");
  await context.close();
  await row.locator("[data-toggle]").click();
  await page.waitForSelector(`#user-admin tr[data-name="${user}"] .badge`);
  await shot("admin-user-disabled");
  ({ context, other } = await signInAs(user, "operator-password-2"));
  await other.waitForSelector('#login-form [role="alert"]');
  await context.close();
});

test("edge services: probe, edit and delete a service; choose services across filters and deliver to them", async () => {
  const project = await page.evaluate(() => localStorage.getItem("project"));
  const write = (method, path, body) => api(path, { method, headers: { "content-type": "application/json", "x-edgefleet-csrf": "1" }, body: JSON.stringify(body) });
  const spare = await write("POST", `/api/v1/projects/${project}/edge-services`, { name: "e2e-spare", endpoint: `${simBase}/i/3`, tags: ["e2e"] });
  assert.ok(spare.id, JSON.stringify(spare));
  await page.click('a[href="#/edges"]');
  await page.fill('#edge-filters input[name="name"]', "e2e-spare");
  await page.click('#edge-filters button[type="submit"]');
  const row = page.locator('#edge-table tr[data-name="e2e-spare"]');
  await row.waitFor();
  await row.locator('[data-act="probe"]').click();
  await page.waitForFunction(() => document.querySelector('#edge-table tr[data-name="e2e-spare"]')?.textContent.includes("online"));
  await shot("edge-probed");

  await row.locator('[data-act="edit"]').click();
  await page.fill('#edge-editor input[name="name"]', "e2e-spare-2");
  await page.fill('#edge-editor input[name="tags"]', "e2e, spare");
  await shot("edge-edit");
  await page.click('#edge-editor button[type="submit"]');
  await page.fill('#edge-filters input[name="name"]', "e2e-spare-2");
  await page.click('#edge-filters button[type="submit"]');
  const edited = page.locator('#edge-table tr[data-name="e2e-spare-2"]');
  await edited.locator(".tag", { hasText: "spare" }).waitFor();

  // One chosen here, one under another filter: the choice outlives the filter.
  await edited.locator("[data-choose]").check();
  await page.fill('#edge-filters input[name="name"]', "");
  await page.fill('#edge-filters input[name="tag"]', "zone-b");
  await page.click('#edge-filters button[type="submit"]');
  await page.waitForFunction(() => !document.querySelector('#edge-table tr[data-name="e2e-spare-2"]'));
  await page.locator("#edge-table tbody [data-choose]").first().check();
  await page.waitForSelector("#edge-chosen:has-text('2 selected')");
  await shot("edges-chosen");
  await page.click("#deliver-these");
  await page.waitForSelector("#deliver-to-note");
  await shot("deliver-to-these");
  await page.locator("tr", { hasText: "line-rules" }).locator('[data-act="deliver"]').click();
  await page.click("#wiz-next");
  await page.waitForSelector("#selection:has-text('2 selected')");
  await page.click("#wiz-next");
  await page.click("#wiz-next");
  await page.waitForFunction(() => ["succeeded", "partial", "failed"].includes(document.querySelector("#c-state")?.dataset.state), null, { timeout: 60000 });
  assert.equal(await page.textContent("#c-total"), "2");
  await page.click(".dialog [data-close]");

  // Deleted after a confirmation (accepted by the test's dialog handler).
  await page.click('a[href="#/edges"]');
  await page.fill('#edge-filters input[name="name"]', "e2e-spare-2");
  await page.click('#edge-filters button[type="submit"]');
  await page.locator('#edge-table tr[data-name="e2e-spare-2"] [data-act="delete"]').click();
  await page.waitForFunction(() => !document.querySelector('#edge-table tr[data-name="e2e-spare-2"]'));
  const gone = await page.evaluate(async (path) => (await fetch(path)).status, `/api/v1/projects/${project}/edge-services/${spare.id}`);
  assert.equal(gone, 404);
});

test("templates: view and compare versions, restore an older one, deliver an older one; Esc asks before throwing edits away", async () => {
  await page.click('a[href="#/config"]');
  const row = page.locator("#tab tr", { hasText: "line-rules" });
  await row.locator('[data-act="versions"]').click();
  await page.locator('#version-rows tr[data-version="1"] [data-v="view"]').click();
  await page.waitForFunction(() => document.querySelector("#version-content")?.textContent.includes("sim/old1"));
  await page.selectOption('#compare select[name="from"]', "1");
  await page.selectOption('#compare select[name="to"]', "2");
  await page.click('#compare button[type="submit"]');
  await page.waitForSelector("#version-diff");
  const removed = await page.locator("#version-diff .removed").allTextContents();
  const added = await page.locator("#version-diff .added").allTextContents();
  assert.ok(removed.some((line) => line.includes("sim/old1")) && added.some((line) => line.includes("sim/edited-v2")), `${removed}\n${added}`);
  await shot("template-versions-diff");

  // Restoring v1 saves its content as the newest version; nothing older is lost.
  await page.locator('#version-rows tr[data-version="1"] [data-v="restore"]').click();
  await page.waitForSelector("text=v1 restored as v3.");
  const project = await page.inputValue("#project");
  const template = (await api(`/api/v1/projects/${project}/templates`)).items.find((x) => x.name === "line-rules");
  assert.equal(template.current_version, 3);
  const newest = await api(`/api/v1/projects/${project}/templates/${template.id}`);
  assert.match(JSON.stringify(newest.content), /sim\/old1/);

  // Deliver an older version: the wizard opens on v2's content.
  await row.locator('[data-act="versions"]').click();
  await page.locator('#version-rows tr[data-version="2"] [data-v="deliver"]').click();
  await page.waitForFunction(() => document.querySelector('#wizard-body textarea[name="content"]')?.value.includes("sim/edited-v2"));
  await shot("deliver-an-older-version");
  const before = asked.length;
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.querySelector("#wizard-body"));
  assert.equal(asked.length, before, "nothing was edited, so Esc closes without asking");

  // An edit is not thrown away without a question.
  await row.locator('[data-act="edit"]').click();
  await page.fill('#template-editor input[name="description"]', "changed and then abandoned");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.querySelector("#template-editor"));
  assert.equal(asked.at(-1), "Throw away your changes?");
});

test("parameters after targets: a table per target, a block pasted from a spreadsheet, a CSV import with its problems, missing values flagged", async () => {
  await page.click('a[href="#/config"]');
  await page.locator("tr", { hasText: "demo-rules" }).locator('[data-act="deliver"]').click();
  await page.waitForSelector(".steps span.current");
  assert.deepEqual(await page.locator(".steps span").allTextContents(), ["1. Content", "2. Targets", "3. Parameters", "4. Execute"]);
  await page.click("#wiz-next");
  await filterTargets({ tag: "zone-a", version: "3.7" }, 3);
  const names = await page.locator('#targets input[type="checkbox"][data-id]').evaluateAll((boxes) => boxes.map((b) => b.getAttribute("aria-label")));
  for (const box of await page.locator('#targets input[type="checkbox"][data-id]').all()) await box.check();
  await page.click("#wiz-next");

  // One row per chosen target, a column per parameter (edge.name is every target's own).
  await page.waitForSelector("#param-table");
  assert.deepEqual(await page.locator("#param-table thead th").allTextContents(), ["Targets", "broker", "threshold"]);
  assert.deepEqual(await page.locator("#param-table tbody td:first-child").allTextContents(), names);
  assert.equal(await page.locator("#param-table input.missing").count(), 6, "no defaults and no values: every cell is flagged");
  await page.fill('[data-default="broker"]', "10.0.0.5");
  assert.equal(await page.locator("#param-table input.missing").count(), 3, "the default fills the broker column");
  // A block of two rows copied from a spreadsheet lands from the focused cell down.
  await page.locator('#param-table [data-row="0"][data-col="1"]').focus();
  await page.evaluate(() => {
    const data = new DataTransfer();
    data.setData("text/plain", "70\n80\n");
    document.activeElement.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  });
  assert.equal(await page.inputValue('#param-table [data-row="1"][data-col="1"]'), "80");
  assert.match(await page.textContent("#param-missing"), new RegExp(`^1 targets lack a value: ${names[2]} \\(threshold\\)`));
  await shot("wizard-parameters-table");

  // Flagged again before Execute.
  await page.click("#wiz-next");
  await page.waitForSelector("#warn-missing");
  await page.click("#wiz-back");

  // A CSV file: every problem is listed, the good rows are taken.
  const csv = `target,threshold,humidity\n${names[2]},"90"\nnot-a-gateway,1\n${names[2]},95\n`;
  await page.setInputFiles("#param-file", { name: "values.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await page.waitForSelector("#param-import-problems");
  const problems = await page.locator("#param-import-problems li").allTextContents();
  assert.deepEqual(problems, [
    "Column humidity is not a parameter of this content (broker, threshold); it was left out.",
    "Line 3: not-a-gateway is not one of the chosen targets.",
    `Line 4: ${names[2]} appears twice; the first row was taken.`,
  ]);
  assert.equal(await page.textContent("#param-imported"), "1 rows imported.");
  assert.equal(await page.textContent("#param-missing"), "Every target has a value for every parameter.");
  await shot("wizard-parameters-imported");

  await page.click("#wiz-next");
  await page.waitForSelector('#target-warnings[data-ready="true"]', { state: "attached" });
  assert.equal(await page.locator("#warn-missing").count(), 0);
  await page.click("#wiz-next");
  await page.waitForFunction(() => document.querySelector("#c-state")?.dataset.state === "succeeded", null, { timeout: 60000 });
  // What was sent: the default, and the values per target as numbers.
  const project = await page.inputValue("#project");
  const deliveries = await api(`/api/v1/projects/${project}/deliveries?limit=1`);
  const delivery = await api(`/api/v1/projects/${project}/deliveries/${deliveries.items[0].id}`);
  assert.deepEqual(delivery.params.defaults, { broker: "10.0.0.5" });
  assert.deepEqual(Object.values(delivery.params.targets).map((v) => v.threshold).sort(), [70, 80, 90]);
  await page.click(".dialog [data-close]");
});

test("select all matching, then leave some out (one row, or a page with its header checkbox)", async () => {
  await page.click('a[href="#/config"]');
  await page.locator("tr", { hasText: "line-rules" }).locator('[data-act="deliver"]').click();
  await page.click("#wiz-next");
  await filterTargets({ tag: "zone-a", version: "3.7" }, 3);
  await page.click("#select-all");
  assert.equal(await page.isChecked("#page-all"), true);
  const first = page.locator('#targets input[type="checkbox"][data-id]').first();
  const left = await first.getAttribute("aria-label");
  await first.uncheck();
  assert.equal(await page.textContent("#selection"), "All matching edge services but 1 are selected (2).");
  assert.equal(await page.isChecked("#page-all"), false);
  // The header checkbox takes the whole page back, and leaves it out.
  await page.check("#page-all");
  assert.equal(await page.textContent("#selection"), "All 3 matching edge services are selected.");
  await page.uncheck("#page-all");
  assert.equal(await page.textContent("#selection"), "All matching edge services but 3 are selected (0).");
  await page.check("#page-all");
  await first.uncheck();
  await shot("wizard-all-but-one");
  await page.click("#wiz-next");
  assert.equal(await page.textContent("#wizard-body p"), "2 targets. Execute the delivery?");
  await page.click("#wiz-plan");
  await page.waitForSelector("#plan-summary", { timeout: 60000 });
  const group = await page.textContent(".plan-group summary");
  assert.match(group, /^2 targets: /);
  assert.ok(!group.includes(left), `${left} was left out: ${group}`);
  await page.click(".dialog [data-close]");
});

test("with all matching, CSV rows for a target left out are flagged, and values of a target unticked later are not sent", async () => {
  await page.click('a[href="#/config"]');
  await page.locator("tr", { hasText: "demo-rules" }).locator('[data-act="deliver"]').click();
  await page.click("#wiz-next");
  await filterTargets({ tag: "zone-a", version: "3.7" }, 3);
  await page.click("#select-all");
  const names = await page.locator('#targets input[type="checkbox"][data-id]').evaluateAll((boxes) => boxes.map((b) => b.getAttribute("aria-label")));
  await page.uncheck(`#targets input[aria-label="${names[0]}"]`);
  await page.click("#wiz-next");
  await page.waitForSelector("#param-file", { state: "attached" });
  await page.fill('[data-default="broker"]', "10.0.0.5");
  await page.fill('[data-default="threshold"]', "50");
  const csv = `target,threshold\n${names[0]},5\n${names[1]},7\n${names[2]},8\n`;
  await page.setInputFiles("#param-file", { name: "values.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await page.waitForSelector("#param-import-problems");
  assert.deepEqual(await page.locator("#param-import-problems li").allTextContents(), [
    `Line 2: ${names[0]} was left out of this delivery (unticked); its values were not taken.`,
  ]);
  assert.equal(await page.textContent("#param-imported"), "2 rows imported.");
  await shot("wizard-parameters-left-out");
  // Unticked after its values came in: its row goes, and its values are not sent.
  await page.click("#wiz-back");
  await page.uncheck(`#targets input[aria-label="${names[1]}"]`);
  await page.click("#wiz-next");
  await page.waitForSelector("#param-table");
  assert.deepEqual(await page.locator("#param-table tbody td:first-child").allTextContents(), [names[2]]);
  await page.click("#wiz-next");
  await page.click("#wiz-plan");
  await page.waitForSelector("#plan-summary", { timeout: 60000 });
  assert.match(await page.textContent(".plan-group summary"), /^1 targets: /);
  const project = await page.inputValue("#project");
  const [plan] = (await api(`/api/v1/projects/${project}/deliveries?limit=1`)).items;
  const sent = await api(`/api/v1/projects/${project}/deliveries/${plan.id}`);
  assert.deepEqual(sent.params, { defaults: { broker: "10.0.0.5", threshold: 50 }, targets: { [names[2]]: { threshold: 8 } } });
  await page.click(".dialog [data-close]");
});

test("webhooks: add one (its secret shown once), send a test, read its calls, delete it", async () => {
  const url = "http://127.0.0.1:9/hook"; // nothing listens there: the test call fails, with the reason
  await page.click('a[href="#/admin"]');
  await page.waitForSelector("#new-webhook");
  await page.fill('#new-webhook input[name="url"]', url);
  await page.click('#new-webhook button[type="submit"]');
  await page.waitForSelector("#webhook-secret code");
  assert.ok((await page.textContent("#webhook-secret code")).length >= 16);
  const row = `#webhook-rows tr[data-url="${url}"]`;
  assert.match(await page.textContent(`${row} td:nth-child(2)`), /All events/);
  await page.click(`${row} [data-test]`);
  await page.waitForSelector('#webhook-test[data-state="failed"]');
  assert.match(await page.textContent("#webhook-test"), /^The test call failed: /);
  await page.click(`${row} [data-calls]`);
  await page.waitForSelector('#webhook-calls td:has-text("Test (ping)")');
  assert.match(await page.textContent('#webhook-calls tbody tr td[data-state="failed"]'), /Given up/);
  await shot("webhook-calls");
  await page.click(`${row} [data-delete]`);
  await page.waitForFunction((selector) => !document.querySelector(selector), row);
  // One that hears only of finished deliveries and drift stays, for the Chinese page below.
  await page.fill('#new-webhook input[name="url"]', "http://127.0.0.1:9/finished");
  await page.uncheck('#new-webhook input[name="all"]');
  await page.check('#new-webhook input[value="delivery.finished"]');
  await page.check('#new-webhook input[value="edge.drifted"]');
  await page.click('#new-webhook button[type="submit"]');
  await page.waitForSelector('#webhook-rows td:has-text("Delivery finished, Edge drifted")');
});

test("switch to Chinese; the choice is remembered for the user", async () => {
  await page.click("#lang");
  await page.waitForSelector("text=操作审计");
  await page.click('a[href="#/audit"]');
  await page.waitForSelector('h1:has-text("操作审计")');
  // Every action reads in Chinese (none shown by its raw name), and so do the outcomes.
  await page.waitForSelector('#audit-table td[data-outcome="success"]:has-text("成功")');
  const untranslated = await page.$$eval("#audit-table td[title]", (cells) => cells.filter((c) => c.textContent === c.title || !/[\u4e00-\u9fff]/.test(c.textContent)).map((c) => c.title));
  assert.deepEqual(untranslated, []);
  await shot("zh-audit");
  for (const [link, title] of [["#/edges", "边缘服务"], ["#/config", "边缘配置管理"], ["#/deliveries", "下发记录"], ["#/admin", "系统管理"]]) {
    await page.click(`a[href="${link}"]`);
    await page.waitForSelector(`h1:has-text("${title}")`);
    // The pager says "next page" (下一页), not the wizard's "next step" (下一步).
    if (link === "#/edges") await page.waitForSelector('.pager button:has-text("下一页")');
    if (link === "#/admin") await page.waitForSelector('#webhook-rows td:has-text("下发已结束, 边缘配置漂移")');
    if (link === "#/deliveries") {
      // A partial delivery's failures lead with their code in Chinese.
      await page.selectOption('#history-filters select[name="state"]', "partial");
      await page.click('#history-filters button[type="submit"]');
      await page.waitForFunction(() => [...document.querySelectorAll("tbody td[data-state]")].every((td) => td.dataset.state === "partial"));
      await page.locator("tbody tr button[data-open]").last().click();
      await page.waitForSelector('#result-table b.failure:has-text("被 edgefleet 拦截")');
      await shot("zh-failure-codes");
      await page.click(".dialog [data-close]");
    }
    await shot(`zh-${link.slice(2)}`);
  }
  // A refusal reads in Chinese, with the name from the answer's details, and the server's own
  // words below it.
  await page.fill('#new-org input[name="name"]', "Demo Plant");
  await page.click('#new-org button[type="submit"]');
  await page.waitForSelector('#new-org [role="alert"][data-code="org_name_taken"]');
  assert.match(await page.textContent('#new-org [role="alert"]'), /^已存在名为 Demo Plant 的组织。organization `Demo Plant` already exists/);
  await shot("zh-error-in-chinese");
  await page.evaluate(() => localStorage.removeItem("lang"));
  await page.reload();
  await page.waitForSelector('a:has-text("边缘服务")');
  const me = await api("/api/v1/me");
  assert.equal(me.language, "zh");
});

test("a first visit follows the browser's language", async () => {
  for (const [locale, signIn] of [["zh-CN", "登录"], ["en-US", "Sign in"]]) {
    const context = await browser.newContext({ locale, viewport: { width: 1360, height: 900 } });
    const fresh = await context.newPage();
    await fresh.goto(`${base}/`);
    await fresh.waitForSelector("#login-form");
    assert.equal((await fresh.textContent('#login-form button[type="submit"]')).trim(), signIn, locale);
    if (locale === "zh-CN") await fresh.screenshot({ path: join(shots, "99-first-visit-zh.png"), fullPage: true });
    await context.close();
  }
});
