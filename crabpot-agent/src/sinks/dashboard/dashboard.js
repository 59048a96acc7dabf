// The dashboard's code, served as a file so the page's CSP can forbid inline script: even
// if alert text (hostile container output) ever reached the DOM as HTML, an inline handler
// such as <img onerror=…> would not run.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const WINDOW_SECONDS = 600;
const series = { t: [], cpu: [], mem: [], rx: [], tx: [], pids: [] };
let lastNet = null;

function chart(id, labels, colors) {
  const opts = {
    width: Math.max(380, $(id).parentElement.clientWidth - 20), height: 160,
    series: [{}].concat(labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5 }))),
    axes: [{ stroke: "#9fb0c3" }, { stroke: "#9fb0c3" }],
    legend: { show: true },
  };
  return new uPlot(opts, [[], ...labels.map(() => [])], $(id));
}
const charts = {
  cpu: chart("cpu", ["cpu"], ["#e67e22"]),
  memory: chart("memory", ["used"], ["#9b59b6"]),
  network: chart("network", ["rx", "tx"], ["#1abc9c", "#3498db"]),
  pids: chart("pids", ["pids"], ["#f1c40f"]),
};

function addSample(entry) {
  const t = entry.t, s = entry.sample;
  series.t.push(t); series.cpu.push(s.cpu_percent);
  series.mem.push(s.memory_used_bytes / 1048576); series.pids.push(s.pids);
  if (lastNet && t > lastNet.t) {
    series.rx.push((s.net_rx_bytes - lastNet.rx) / 1024 / (t - lastNet.t));
    series.tx.push((s.net_tx_bytes - lastNet.tx) / 1024 / (t - lastNet.t));
  } else { series.rx.push(0); series.tx.push(0); }
  lastNet = { t, rx: s.net_rx_bytes, tx: s.net_tx_bytes };
  while (series.t.length && series.t[0] < t - WINDOW_SECONDS) {
    for (const k of Object.keys(series)) series[k].shift();
  }
}
function redraw() {
  charts.cpu.setData([series.t, series.cpu]);
  charts.memory.setData([series.t, series.mem]);
  charts.network.setData([series.t, series.rx, series.tx]);
  charts.pids.setData([series.t, series.pids]);
}

// Alert text is hostile input: it only ever goes through textContent.
function addAlert(a) {
  const li = document.createElement("li");
  li.className = a.severity;
  const sev = document.createElement("span");
  sev.className = "sev"; sev.textContent = a.severity;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = `${a.timestamp} ${a.source}: ${a.message}`;
  li.title = JSON.stringify(a.details);
  li.append(sev, body);
  $("feed").prepend(li);
  while ($("feed").children.length > 500) $("feed").lastChild.remove();
}
function setState(s) {
  $("container").textContent = s.container || "-";
  $("state").textContent = s.state || "-";
  $("state").className = "pill " + (s.state || "");
  $("trust").textContent = s.trust_score;
  $("bpf").textContent = s.bpf ? Object.entries(s.bpf).map(([r, l]) => `${r}=${l}`).join(" ") : "-";
  $("counters").textContent = s.counters ? `events ${s.counters.events} · dropped ${s.counters.dropped}` : "";
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  const ws = new WebSocket(url);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "hello") {
      (m.alerts || []).forEach(addAlert);
      (m.stats || []).forEach(addSample); redraw();
      if (m.state) setState(m.state);
      document.body.dataset.ready = "1";
    } else if (m.type === "alert") {
      addAlert(m.alert);
      if (m.alert.details && m.alert.details.decision_id) loadPending();
    }
    else if (m.type === "stats") { addSample(m.stats); redraw(); }
    else if (m.type === "state") setState(m.state);
  };
  ws.onclose = () => { $("state").textContent = "disconnected"; setTimeout(connect, 2000); };
}

async function control(action) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(`api/${action}`, { method: "POST", headers });
  $("control-message").textContent = response.ok
    ? `${action}: done`
    : `${action} refused (${response.status}): open the dashboard URL with its token`;
}
$("pause").onclick = () => control("pause");
$("resume").onclick = () => control("resume");

// Pending decisions (token required, like pause and resume). Their text names processes
// and destinations from the container: textContent only.
function decisionButton(label, cls, id, verb, body) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls;
  b.onclick = () => decide(id, verb, body);
  return b;
}
function renderPending(list) {
  const items = list.map((d) => {
    const li = document.createElement("li");
    li.dataset.id = d.id;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = `${d.id}  ${d.created}  [${d.container}]  ${d.describe}`;
    li.append(text,
      decisionButton("Approve", "approve", d.id, "approve", {}),
      decisionButton("Approve always", "always", d.id, "approve", { always: true }),
      decisionButton("Deny", "deny", d.id, "deny", {}));
    return li;
  });
  $("pending").replaceChildren(...items);
  $("pending-count").textContent = String(list.length);
}
async function loadPending() {
  if (!token) {
    $("pending-message").textContent = "open the dashboard URL with its token to see and answer them";
    return;
  }
  try {
    const response = await fetch("api/pending", { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) { $("pending-message").textContent = `pending decisions refused (${response.status})`; return; }
    renderPending((await response.json()).pending || []);
    $("pending-message").textContent = "";
  } catch (error) { $("pending-message").textContent = "pending decisions unavailable"; }
}
async function decide(id, verb, body) {
  const response = await fetch(`api/decisions/${encodeURIComponent(id)}/${verb}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(Object.assign({ via: "dashboard" }, body)),
  });
  const text = (await response.text()).trim();
  $("control-message").textContent = response.ok ? text : `${verb} refused (${response.status}): ${text}`;
  loadPending();
}
setInterval(loadPending, 3000);
loadPending();
connect();
