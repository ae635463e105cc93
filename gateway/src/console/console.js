// wafer console: the browser side of /_wafer/ — sign-in, the functions list, one function's stats, versions, queues and live logs.
"use strict";

const TOKEN_KEY = "wafer.token";
const API = "/_wafer/v1";
const LIST_POLL_MS = 2000;
const DETAIL_POLL_MS = 2000;
const STATS_POLL_MS = 3000;
const VERSIONS_POLL_MS = 5000;
const LOG_TAIL = 50;
const LOG_LINES_MAX = 500;
const LOG_RETRY_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";

let token = sessionStorage.getItem(TOKEN_KEY);
let view = null; // the open view: { live, timers, controllers }
// Banner messages keyed by request, so one call's success clears only its own failure
// (several pollers run at once; otherwise one healthy poller would hide another's error).
const errors = new Map();
const listSort = { key: "name", dir: 1 }; // survives polling and view changes

// ---------------------------------------------------------------- DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  return node;
}

// Children are nodes or strings; strings become text nodes, never markup.
function h(tag, attrs, ...children) {
  const node = setAttrs(document.createElement(tag), attrs);
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

// Rebuild `node` with `build(data)` only when the data changed, so polling does not
// reset text selections or buttons that did not change.
const rendered = new WeakMap();
function renderIfChanged(node, data, build) {
  const key = JSON.stringify(data);
  if (rendered.get(node) === key) return;
  rendered.set(node, key);
  build(data);
}

// ---------------------------------------------------------------- formatting

const pad = (n, w = 2) => String(n).padStart(w, "0");
const dash = "—";

function hhmm(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function hhmmss(ms) {
  const d = new Date(ms);
  return `${hhmm(d)}:${pad(d.getSeconds())}`;
}

function clock(ms) {
  return `${hhmmss(ms)}.${pad(new Date(ms).getMilliseconds(), 3)}`;
}

function dateTime(value) {
  const d = new Date(value);
  if (value == null || Number.isNaN(d.getTime())) return dash;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hhmmss(d)}`;
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return dateTime(ms);
}

function until(ms) {
  if (ms == null) return dash;
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return "due now";
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.round(s / 60)} min`;
  if (s < 86400) return `in ${Math.round(s / 3600)} h`;
  return dateTime(ms);
}

function num(v) {
  if (v == null || !Number.isFinite(v)) return dash;
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  if (Number.isInteger(v)) return String(v);
  return String(+v.toFixed(a < 1 ? 3 : a < 10 ? 2 : 1));
}

const millis = (v) => (v == null ? dash : `${num(v)} ms`);
const pct = (p) => `${Math.round((p || 0) * 10) / 10}%`;
const shortDigest = (d) => (d ? String(d).slice(0, 12) : dash);
const yesNo = (b) => (b ? "yes" : "no");
const fnPath = (name, rest = "") => `${API}/functions/${encodeURIComponent(name)}${rest}`;

// ---------------------------------------------------------------- a function's derived values

const okCalls = (f) => (f.status ? f.status.invocations_ok || 0 : 0);
const failedCalls = (f) => (f.status ? f.status.invocations_failed || 0 : 0); // absent on old servers
const totalCalls = (f) => okCalls(f) + failedCalls(f);
const codeState = (f) => (!f.status ? "not loaded" : f.status.code_loaded ? "loaded" : "evicted");

// Which tier the code in memory is (absent while evicted, and from older servers).
const compilerText = (s) =>
  !s || !s.compiler ? dash : s.compiler === "winch" ? "Winch (baseline code)" : "Cranelift";

function instances(f) {
  return f.status ? `${f.status.instances_idle} / ${f.status.instances_busy}` : dash;
}

// "7: 90% · 8: 10%" when more than one version takes traffic, else "".
function splitText(f) {
  const shares = (f.traffic || []).filter((s) => s.weight > 0);
  return shares.length > 1 ? shares.map((s) => `${s.version}: ${pct(s.percent)}`).join(" · ") : "";
}

function versionText(f) {
  let text = splitText(f) || String(f.version);
  const shown = (f.traffic || []).some((s) => s.weight > 0 && s.version === f.latest);
  if (f.latest != null && f.latest !== f.version && !shown) text += ` (latest ${f.latest})`;
  return text;
}

function nextRun(f) {
  const times = (f.schedules || []).map((s) => Date.parse(s.next_run)).filter(Number.isFinite);
  return times.length ? Math.min(...times) : null;
}

// ---------------------------------------------------------------- errors banner

function showError(key, message) {
  errors.set(key, message);
  renderErrors();
}

function clearError(key) {
  if (errors.delete(key)) renderErrors();
}

function renderErrors() {
  const banner = $("#error");
  const unique = [...new Set(errors.values())];
  $(".banner-messages", banner).replaceChildren(...unique.map((m) => h("p", { text: m })));
  banner.hidden = unique.length === 0;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {}

// The `error` field of an error's JSON body (or the status text when it has none).
async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.error) return String(body.error);
  } catch (_) {
    // not JSON
  }
  return res.statusText || "request failed";
}

async function errorMessage(res) {
  const kind = res.headers.get("x-wafer-error");
  return `${kind ? kind + ": " : ""}${await errorText(res)} (HTTP ${res.status})`;
}

// Every call goes through here: bearer header, no caching, 401 signs out, errors reach the banner.
async function request(path, { acceptAnyStatus = false, ...init } = {}) {
  const used = token;
  const opened = view; // a late answer must not touch the banner of the view opened since
  const key = `${init.method || "GET"} ${path.split("?")[0]}`;
  const report = (message) => view === opened && (message ? showError(key, message) : clearError(key));
  const headers = { Authorization: "Bearer " + used, ...(init.headers || {}) };
  let res;
  try {
    res = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch (e) {
    if (!(init.signal && init.signal.aborted)) report(`Could not reach the gateway: ${e.message}`);
    throw e;
  }
  if (res.status === 401) {
    if (used === token) signOut("Your token is no longer accepted");
    throw new ApiError("unauthorized");
  }
  if (!res.ok && !acceptAnyStatus) {
    const message = await errorMessage(res);
    report(message);
    throw new ApiError(message);
  }
  report(null);
  return res;
}

async function api(path, opts) {
  return (await request(path, opts)).json();
}

function sendJson(method, path, body) {
  return api(path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

// ---------------------------------------------------------------- views and polling

function startView() {
  stopView();
  view = { live: true, timers: new Set(), controllers: new Set() };
  return view;
}

function stopView() {
  if (!view) return;
  view.live = false;
  view.timers.forEach(clearTimeout);
  view.controllers.forEach((c) => c.abort());
  view = null;
  errors.clear();
  renderErrors();
}

// Run `fn` now and again `ms` after each run ends, while `v` is open. Returns a function
// that refreshes now; runs never overlap (a refresh during a run runs once more after it).
function every(v, ms, fn) {
  let timer = null;
  let running = false;
  let again = false;
  const tick = async () => {
    clearTimeout(timer);
    v.timers.delete(timer);
    if (!v.live) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } catch (_) {
      // already shown in the banner; keep polling
    } finally {
      running = false;
    }
    if (!v.live) return;
    timer = setTimeout(tick, again ? 0 : ms);
    again = false;
    v.timers.add(timer);
  };
  tick();
  return tick;
}

const sleep = (v, ms) =>
  new Promise((resolve) => {
    const t = setTimeout(() => (v.timers.delete(t), resolve()), ms);
    v.timers.add(t);
  });

function route() {
  stopView();
  if (!token) {
    showSignin();
    return;
  }
  showApp();
  const match = location.hash.match(/^#\/functions\/([^/?]+)/);
  let name = null;
  try {
    name = match && decodeURIComponent(match[1]);
  } catch (_) {
    // a malformed hash: show the list
  }
  if (name) openFunction(name);
  else openList();
}

// ---------------------------------------------------------------- sign-in

function showSignin(message) {
  const app = $("#app");
  app.replaceChildren(); // no data stays in the page while signed out
  app.hidden = true;
  $("#signout").hidden = true;
  $("#topnav").hidden = true;
  $("#signin").hidden = false;
  if (message != null) setText($("#signin-error"), message);
  $("#token").focus();
}

function showApp() {
  $("#signin").hidden = true;
  setText($("#signin-error"), "");
  $("#signout").hidden = false;
  $("#topnav").hidden = false;
  $("#app").hidden = false;
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopView();
  showSignin(message || "");
}

async function onSignin(event) {
  event.preventDefault();
  const input = $("#token");
  const button = $("#signin button[type=submit]");
  const candidate = input.value.trim();
  if (!candidate) return setText($("#signin-error"), "Enter the admin token.");
  button.disabled = true;
  setText($("#signin-error"), "");
  try {
    const res = await fetch(`${API}/functions`, {
      headers: { Authorization: "Bearer " + candidate },
      cache: "no-store",
    });
    if (res.ok) {
      token = candidate;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      route();
      return;
    }
    setText(
      $("#signin-error"),
      res.status === 401
        ? `That token was refused (401): ${await errorText(res)}`
        : `Sign-in failed: ${await errorMessage(res)}`,
    );
  } catch (e) {
    setText($("#signin-error"), `Could not reach the gateway: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- functions list

// Each column: header, a sort key and the cell's text (plus an optional title and class).
const COLUMNS = [
  { key: "name", label: "Name", sort: (f) => f.name },
  { key: "route", label: "Route", sort: (f) => f.route || "", text: (f) => f.route || dash },
  { key: "interface", label: "Interface", sort: (f) => (f.status && f.status.interface) || "",
    text: (f) => (f.status && f.status.interface) || dash },
  { key: "version", label: "Version", sort: (f) => f.version, text: versionText },
  { key: "instances", label: "Idle / busy", sort: (f) => (f.status ? f.status.instances_idle + f.status.instances_busy : -1),
    text: instances, cls: () => "num" },
  { key: "calls", label: "Calls", sort: totalCalls, text: (f) => num(totalCalls(f)),
    title: (f) => `${okCalls(f)} ok, ${failedCalls(f)} failed`, cls: () => "num" },
  { key: "errors", label: "Errors", sort: failedCalls, text: (f) => num(failedCalls(f)),
    cls: (f) => (failedCalls(f) > 0 ? "num bad" : "num") },
  { key: "last", label: "Last call", sort: (f) => (f.status && f.status.last_call_ms) || 0,
    text: (f) => ago(f.status && f.status.last_call_ms),
    title: (f) => (f.status && f.status.last_call_ms ? dateTime(f.status.last_call_ms) : "") },
  { key: "code", label: "Code", sort: codeState, text: codeState, cls: (f) => `state-${codeState(f).replace(" ", "-")}` },
  { key: "next", label: "Next run", sort: (f) => nextRun(f) ?? Infinity, text: (f) => until(nextRun(f)),
    title: (f) => (nextRun(f) == null ? "" : dateTime(nextRun(f))) },
];

function compareFunctions(a, b) {
  const col = COLUMNS.find((c) => c.key === listSort.key) || COLUMNS[0];
  const x = col.sort(a);
  const y = col.sort(b);
  const order = typeof x === "number" && typeof y === "number"
    ? (x === y ? 0 : x < y ? -1 : 1)
    : String(x).localeCompare(String(y));
  return order * listSort.dir || a.name.localeCompare(b.name);
}

function openList() {
  const v = startView();
  const head = h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", "data-key": c.key, onclick: () => sortBy(c.key) },
    h("button", { type: "button", class: "sort", text: c.label }))));
  const section = h("section", { id: "functions", class: "panel" },
    h("h2", { text: "Functions" }),
    h("table", { id: "functions-table", class: "grid", hidden: true }, h("thead", {}, head), h("tbody")),
    h("p", { class: "empty", hidden: true }, "No functions yet. Deploy one with ", h("code", { text: "wafer deploy" }), "."),
  );
  const workers = h("section", { id: "workers", class: "panel" }, h("h2", { text: "Workers" }),
    h("dl", { class: "facts" }), h("div", { class: "workers-table" }));
  $("#app").replaceChildren(section, workers);

  let last = null;
  v.rerender = () => last && renderFunctions(section, last);
  every(v, LIST_POLL_MS, async () => {
    const list = await api(`${API}/functions`);
    if (!v.live) return;
    last = Array.isArray(list) ? list : [];
    renderFunctions(section, last);
  });
  every(v, LIST_POLL_MS, async () => {
    const health = await (await request("/_wafer/healthz", { acceptAnyStatus: true })).json();
    if (v.live) renderWorkers(workers, health);
  });
}

function sortBy(key) {
  if (listSort.key === key) listSort.dir = -listSort.dir;
  else Object.assign(listSort, { key, dir: 1 });
  if (view && view.rerender) view.rerender();
}

function renderFunctions(section, list) {
  const table = $("#functions-table", section);
  const tbody = table.tBodies[0];
  $(".empty", section).hidden = list.length > 0;
  table.hidden = list.length === 0;
  for (const th of table.tHead.rows[0].cells) {
    const key = th.dataset.key;
    th.setAttribute("aria-sort", key === listSort.key ? (listSort.dir > 0 ? "ascending" : "descending") : "none");
  }
  // Rows are kept by name and only their text updated, so a click is not lost to a redraw.
  const rows = new Map([...tbody.rows].map((r) => [r.dataset.function, r]));
  [...list].sort(compareFunctions).forEach((f, i) => {
    let tr = rows.get(f.name);
    if (tr) rows.delete(f.name);
    else tr = newFunctionRow(f.name);
    fillFunctionRow(tr, f);
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
  });
  rows.forEach((tr) => tr.remove());
}

function newFunctionRow(name) {
  const link = h("a", { href: `#/functions/${encodeURIComponent(name)}`, text: name });
  return h("tr", { "data-function": name }, h("td", { class: "name" }, link), COLUMNS.slice(1).map(() => h("td")));
}

function fillFunctionRow(tr, f) {
  tr.classList.toggle("unloaded", !f.status);
  COLUMNS.forEach((col, i) => {
    if (!col.text) return; // the name cell keeps its link
    const td = tr.cells[i];
    setText(td, col.text(f));
    const title = col.title ? col.title(f) : "";
    if (title) td.title = title;
    else td.removeAttribute("title");
    td.className = col.cls ? col.cls(f) : "";
  });
}

function renderWorkers(section, health) {
  const w = (health && health.worker) || {};
  const ok = health && health.status === "ok";
  kv($("dl", section), [
    ["Status", (health && health.status) || "unknown", ok ? "good" : "bad"],
    ["Instances live / max", `${num(w.instances_live)} / ${num(w.instances_max)}`],
    ["Pooling", w.pooling ? "on" : "off"],
    ["Functions", num(health && health.functions)],
    w.shutting_down ? ["Shutting down", "yes", "bad"] : null,
  ]);
  const list = Array.isArray(w.workers) ? w.workers : [];
  renderIfChanged($(".workers-table", section), list, () => {
    $(".workers-table", section).replaceChildren(list.length ? table(
      ["ID", "URL", "State", "Instances live", "Functions"],
      list.map((x) => [x.id, x.url, { text: x.state, cls: x.state === "ready" ? "good" : "warn" },
        { text: num(x.instances_live), cls: "num" }, { text: num(x.functions), cls: "num" }]),
    ) : "");
  });
}

// ---------------------------------------------------------------- small builders

// A table from headers and rows; a cell is text, a node, or { text, cls, title }.
function table(headers, rows, attrs = {}) {
  const cell = (c) => {
    if (c instanceof Node) return h("td", {}, c);
    if (c && typeof c === "object") return h("td", { class: c.cls, title: c.title }, c.node || String(c.text ?? dash));
    return h("td", { text: c ?? dash });
  };
  return h("table", { class: "grid", ...attrs },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows.map((r) => h("tr", r.attrs || {}, (r.cells || r).map(cell)))));
}

// Label/value pairs in a <dl> (or counters): rebuilt only when the labels change, else text updated.
function kv(container, items, counters = false) {
  items = items.filter(Boolean);
  const labels = items.map((i) => i[0]).join("\n");
  if (container.dataset.labels !== labels) {
    container.dataset.labels = labels;
    container.replaceChildren(...items.map(([label]) =>
      counters ? h("div", { class: "counter" }, h("span", { class: "label", text: label }), h("span", { class: "value" }))
        : h("div", { class: "fact" }, h("dt", { text: label }), h("dd"))));
  }
  items.forEach(([, value, cls, title], i) => {
    const node = container.children[i].lastElementChild;
    setText(node, value ?? dash);
    node.className = counters ? `value ${cls || ""}`.trim() : cls || "";
    if (title) node.title = title;
    else node.removeAttribute("title");
  });
}

// ---------------------------------------------------------------- one function

const CHARTS = [
  { series: "calls", caption: () => "Calls per second", minMax: 0.5,
    lines: [{ cls: "calls", label: "calls/s", value: (p, st) => p.calls / bucketSeconds(p, st) }],
    tip: (p, st) => `${p.calls} calls, ${num(p.calls / bucketSeconds(p, st))}/s` },
  { series: "latency", caption: () => "Latency (ms)", minMax: 1,
    lines: [{ cls: "p50", label: "p50", value: (p) => p.p50_ms }, { cls: "p99", label: "p99", value: (p) => p.p99_ms }],
    tip: (p) => `p50 ${millis(p.p50_ms)}, p99 ${millis(p.p99_ms)} over ${p.calls} calls` },
  { series: "errors", caption: (st) => `Errors per ${st.bucket_seconds} s`, minMax: 1, integer: true,
    lines: [{ cls: "errors", label: "errors", value: (p) => p.errors }],
    tip: (p) => `${p.errors} errors of ${p.calls} calls` },
  { series: "cold", caption: (st) => `Warm and cold starts per ${st.bucket_seconds} s`, minMax: 1, integer: true,
    lines: [{ cls: "warm", label: "warm", value: (p) => p.warm }, { cls: "cold", label: "cold", value: (p) => p.cold }],
    tip: (p) => `${p.warm} warm, ${p.cold} cold${p.instantiate_ms == null ? "" : `, instantiate ${millis(p.instantiate_ms)}`}` },
  { series: "instantiate", caption: () => "Instantiation (ms, mean)", minMax: 1,
    lines: [{ cls: "instantiate", label: "instantiate", value: (p) => p.instantiate_ms }],
    tip: (p) => `instances started in ${millis(p.instantiate_ms)} on average (${p.cold} cold starts)` },
];

// The last bucket is still filling: divide by the part of it that has elapsed, so the
// current rate is not understated.
function bucketSeconds(p, st) {
  const full = st.bucket_seconds || 1;
  const elapsed = (st.now_ms - p.t_ms) / 1000;
  return elapsed > 0 && elapsed < full ? Math.max(1, elapsed) : full;
}

function openFunction(name) {
  const v = startView();
  const section = h("section", { id: "function", "data-function": name },
    h("nav", { class: "crumbs" }, h("a", { href: "#/", text: "Functions" }), " / ", h("span", { text: name })),
    h("div", { class: "panel fn-head" }, h("h2", { text: name }), h("dl", { class: "facts" })),
    h("div", { class: "counters" }),
    h("section", { class: "panel" },
      h("h3", {}, "Last hour ", h("span", { class: "totals muted" })),
      h("div", { class: "charts" }, CHARTS.map(chartFigure))),
    h("section", { class: "panel", id: "versions" },
      h("div", { class: "panel-head" }, h("h3", { text: "Versions" }),
        h("button", { id: "rollback", type: "button", text: "Roll back", onclick: () => rollback(name, v) })),
      h("div", { class: "versions-table" })),
    h("section", { class: "panel", id: "queues", hidden: true }, h("h3", { text: "Queue triggers" }), h("div")),
    h("section", { class: "panel", id: "schedules", hidden: true }, h("h3", { text: "Schedules" }), h("div")),
    h("section", { class: "panel", id: "logs-panel" },
      h("div", { class: "panel-head" }, h("h3", { text: "Live logs" }), h("span", { class: "log-status muted" })),
      h("div", { id: "logs", "aria-live": "off" })),
  );
  $("#app").replaceChildren(section);

  v.refreshDetail = every(v, DETAIL_POLL_MS, async () => {
    const f = await api(fnPath(name));
    if (v.live) renderDetail(section, f);
  });
  every(v, STATS_POLL_MS, async () => {
    const stats = await api(fnPath(name, "/stats"));
    if (v.live) renderStats(section, stats);
  });
  v.refreshVersions = every(v, VERSIONS_POLL_MS, async () => {
    const [versions, queues] = await Promise.all([api(fnPath(name, "/versions")), api(fnPath(name, "/queues"))]);
    if (!v.live) return;
    renderVersions(section, name, v, versions);
    renderQueues(section, queues);
  });
  followLogs(name, v, $("#logs", section), $(".log-status", section));
}

function renderDetail(section, f) {
  const s = f.status;
  kv($(".fn-head dl", section), [
    ["Route", f.route || dash, "mono"],
    ["Interface", (s && s.interface) || dash],
    ["Version", f.latest != null && f.latest !== f.version ? `${f.version} (latest ${f.latest})` : String(f.version)],
    splitText(f) ? ["Traffic", splitText(f)] : null,
    f.sticky_header ? ["Sticky header", f.sticky_header, "mono"] : null,
    ["Digest", shortDigest(f.digest), "mono", f.digest],
    ["Deployed", dateTime(f.deployed_at), "", f.deployed_at],
    ["Message", f.message || dash],
  ]);
  kv($(".counters", section), [
    ["Calls", num(totalCalls(f)), "", `${okCalls(f)} ok, ${failedCalls(f)} failed`],
    ["Errors", num(failedCalls(f)), failedCalls(f) ? "bad" : ""],
    ["Cold starts", s ? num(s.cold_starts) : dash],
    ["Warm starts", s ? num(s.warm_starts) : dash],
    ["Idle / busy", instances(f)],
    ["Fresh instance per call", s ? yesNo(s.fresh_instance_per_call) : dash],
    ["Code", codeState(f), s && s.code_loaded ? "good" : "warn"],
    ["Compiled by", compilerText(s)],
    ["Last call", ago(s && s.last_call_ms), "", s && s.last_call_ms ? dateTime(s.last_call_ms) : ""],
  ], true);
  renderSchedules(section, f.schedules || []);
}

function renderSchedules(section, schedules) {
  const panel = $("#schedules", section);
  panel.hidden = schedules.length === 0;
  renderIfChanged(panel, schedules, () => {
    panel.lastElementChild.replaceChildren(table(["Name", "Cron", "Time zone", "Next run"],
      schedules.map((s) => [s.name, { text: s.cron, cls: "mono" }, s.timezone || "UTC",
        { text: dateTime(s.next_run), title: s.next_run }])));
  });
}

function renderVersions(section, name, v, data) {
  const list = (data && data.versions) || [];
  $("#rollback", section).disabled = list.length < 2;
  renderIfChanged($(".versions-table", section), list, () => {
    const rows = list.map((x) => ({
      attrs: { "data-version": x.version },
      cells: [
        { text: x.version, cls: "num" },
        { text: shortDigest(x.digest), cls: "mono", title: x.digest },
        { text: dateTime(x.deployed_at), title: x.deployed_at },
        x.message || dash,
        h("span", {}, (x.tags || []).map((t) => h("span", { class: "tag", text: t }))),
        { text: pct(x.traffic), cls: x.traffic > 0 ? "num good" : "num muted" },
        x.traffic >= 100 ? "" : h("button", { type: "button", class: "small", text: "Send all traffic",
          onclick: () => sendAllTraffic(name, x.version, v) }),
      ],
    }));
    $(".versions-table", section).replaceChildren(
      table(["Version", "Digest", "Deployed", "Message", "Tags", "Traffic", ""], rows));
  });
}

function renderQueues(section, queues) {
  const panel = $("#queues", section);
  queues = Array.isArray(queues) ? queues : [];
  panel.hidden = queues.length === 0;
  // On a cluster each worker holds its own consumer of every queue: a row per worker.
  const byWorker = queues.some((q) => q.worker);
  renderIfChanged(panel, queues, () => {
    panel.lastElementChild.replaceChildren(table(
      [...(byWorker ? ["Worker"] : []),
        "Queue", "Broker", "Connected", "Messages ready", "Dead-letter queue", "Dead letters"],
      queues.map((q) => [
        ...(byWorker ? [{ text: q.worker || dash, cls: "mono" }] : []),
        { text: q.queue, cls: "mono" },
        { text: q.broker, cls: "mono" },
        q.connected ? { text: "yes", cls: "good" }
          : { text: q.last_error ? `no: ${q.last_error}` : "no", cls: "bad" },
        { text: num(q.messages), cls: "num" },
        { text: q.dead_letter_queue || dash, cls: "mono" },
        { text: num(q.dead_letters), cls: q.dead_letters > 0 ? "num bad" : "num" },
      ])));
  });
}

async function sendAllTraffic(name, version, v) {
  if (!confirm(`Send all of ${name}'s traffic to version ${version}?`)) return;
  try {
    await sendJson("PUT", fnPath(name, "/traffic"), { split: [{ version: String(version), weight: 100 }] });
  } catch (_) {
    return; // shown in the banner
  }
  if (v.live) {
    v.refreshDetail();
    v.refreshVersions();
  }
}

async function rollback(name, v) {
  if (!confirm(`Roll ${name} back? All traffic goes to the version before the current one.`)) return;
  try {
    await sendJson("POST", fnPath(name, "/rollback"), {});
  } catch (_) {
    return;
  }
  if (v.live) {
    v.refreshDetail();
    v.refreshVersions();
  }
}

// ---------------------------------------------------------------- charts

const CH = { w: 560, h: 180, left: 46, right: 20, top: 10, bottom: 22 };

function chartFigure(spec) {
  return h("figure", { class: "chart-box" },
    h("figcaption", {}, h("span", { class: "caption", text: spec.caption({ bucket_seconds: 10 }) }),
      h("span", { class: "legend" }, spec.lines.map((l) => h("span", { class: `key s-${l.cls}`, text: l.label })))),
    svg("svg", { class: "chart", "data-series": spec.series, "data-points": 0, viewBox: `0 0 ${CH.w} ${CH.h}`,
      role: "img", "aria-label": spec.caption({ bucket_seconds: 10 }) }));
}

function renderStats(section, stats) {
  const t = stats.totals || {};
  setText($(".totals", section), `${num(t.calls)} calls · ${num(t.errors)} errors · ${num(t.cold)} cold · ${num(t.warm)} warm`);
  for (const spec of CHARTS) {
    const node = $(`svg.chart[data-series="${spec.series}"]`, section);
    setText($(".caption", node.parentNode), spec.caption(stats));
    drawChart(node, stats, spec);
  }
}

// A "nice" step (1, 2 or 5 times a power of ten) giving about `count` ticks up to `max`.
function niceStep(max, count) {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

// Tick times on whole 10 minutes of local time.
function timeTicks(x0, x1, stepMin = 10) {
  const d = new Date(x0);
  d.setSeconds(0, 0);
  d.setMinutes(Math.ceil(d.getMinutes() / stepMin) * stepMin);
  const ticks = [];
  for (let t = d.getTime(); t <= x1; t += stepMin * 60000) if (t >= x0) ticks.push(t);
  return ticks;
}

function drawChart(node, stats, spec) {
  const points = stats.points || [];
  const bucketMs = (stats.bucket_seconds || 10) * 1000;
  const x0 = points.length ? points[0].t_ms : stats.now_ms - stats.window_seconds * 1000;
  const x1 = points.length ? points[points.length - 1].t_ms + bucketMs : stats.now_ms;
  const active = points.filter((p) => p.calls > 0);

  const values = [];
  for (const line of spec.lines) for (const p of points) {
    const y = line.value(p, stats);
    if (y != null && Number.isFinite(y)) values.push(y);
  }
  const rawStep = niceStep(Math.max(...values, spec.minMax), 4);
  const step = spec.integer ? Math.max(1, rawStep) : rawStep; // no "0.5 errors" ticks
  const yMax = Math.ceil(Math.max(...values, step) / step) * step;
  const plotW = CH.w - CH.left - CH.right;
  const plotH = CH.h - CH.top - CH.bottom;
  const sx = (t) => CH.left + ((t - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (y) => CH.top + (1 - y / yMax) * plotH;
  const mid = (p) => sx(p.t_ms + bucketMs / 2);

  const parts = [axes(x0, x1, yMax, step, sx, sy)];
  if (active.length === 0) {
    parts.push(svg("text", { class: "note", x: CH.left + plotW / 2, y: CH.top + plotH / 2, "text-anchor": "middle",
      text: "no calls in the last hour" }));
  } else {
    for (const line of spec.lines) {
      parts.push(svg("path", { class: `line s-${line.cls}`, d: pathData(points, (p) => line.value(p, stats), mid, sy) }));
    }
    // One circle per bucket with calls, on the first line; its title has the exact values.
    const first = spec.lines[0];
    for (const p of active) {
      const y = first.value(p, stats);
      if (y == null || !Number.isFinite(y)) continue;
      parts.push(svg("circle", { class: `point s-${first.cls}`, cx: mid(p).toFixed(1), cy: sy(y).toFixed(1), r: 2.5 },
        svg("title", { text: `${hhmmss(p.t_ms)}: ${spec.tip(p, stats)}` })));
    }
  }
  node.replaceChildren(...parts);
  node.setAttribute("data-points", String(active.length));
}

// Path through the values, broken where a value is missing (latency of buckets without calls).
function pathData(points, value, sx, sy) {
  let d = "";
  let pen = false;
  for (const p of points) {
    const y = value(p);
    if (y == null || !Number.isFinite(y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${sx(p).toFixed(1)} ${sy(y).toFixed(1)}`;
    pen = true;
  }
  return d;
}

function axes(x0, x1, yMax, step, sx, sy) {
  const g = svg("g", { class: "axes" });
  const bottom = CH.h - CH.bottom;
  for (let y = 0; y <= yMax + step / 2; y += step) {
    g.append(
      svg("line", { class: y === 0 ? "axis" : "gridline", x1: CH.left, x2: CH.w - CH.right, y1: sy(y), y2: sy(y) }),
      svg("text", { class: "tick", x: CH.left - 5, y: sy(y) + 3, "text-anchor": "end", text: num(y) }));
  }
  g.append(svg("line", { class: "axis", x1: CH.left, x2: CH.left, y1: CH.top, y2: bottom }));
  for (const t of timeTicks(x0, x1)) {
    g.append(
      svg("line", { class: "axis", x1: sx(t), x2: sx(t), y1: bottom, y2: bottom + 4 }),
      svg("text", { class: "tick", x: sx(t), y: bottom + 15, "text-anchor": "middle", text: hhmm(t) }));
  }
  return g;
}

// ---------------------------------------------------------------- live logs

// Follow the log stream (NDJSON over fetch, since EventSource cannot send the bearer
// header), reconnecting while the view is open.
async function followLogs(name, v, box, status) {
  const last = { ms: -Infinity, keys: [] }; // the newest time shown, and the lines shown at it
  while (v.live) {
    // A reconnect replays the tail: skip what is older than the newest line shown, and the
    // lines already shown at its time.
    const skip = { ms: last.ms, keys: [...last.keys] };
    const controller = new AbortController();
    v.controllers.add(controller);
    try {
      const res = await request(fnPath(name, `/logs?tail=${LOG_TAIL}&follow=true`), { signal: controller.signal });
      setText(status, "connected");
      await readLines(res.body, (line) => addLogLine(box, line, last, skip));
      setText(status, "stream ended; reconnecting…");
    } catch (e) {
      if (controller.signal.aborted || !v.live) return;
      setText(status, "disconnected; retrying…");
    } finally {
      v.controllers.delete(controller);
    }
    await sleep(v, LOG_RETRY_MS);
  }
}

async function readLines(body, onLine) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) onLine(line);
    }
  }
  if (buffer.trim()) onLine(buffer.trim());
}

function addLogLine(box, line, last, skip) {
  let event;
  try {
    event = JSON.parse(line);
  } catch (_) {
    event = { time_ms: Date.now(), stream: "wafer", text: line };
  }
  const ms = Number(event.time_ms) || 0;
  const stream = ["stdout", "stderr", "wafer"].includes(event.stream) ? event.stream : "wafer";
  const key = `${stream}\u0000${event.worker || ""}\u0000${event.text}`;
  if (ms < skip.ms) return;
  if (ms === skip.ms && skip.keys.includes(key)) {
    skip.keys.splice(skip.keys.indexOf(key), 1);
    return;
  }
  if (ms > last.ms) Object.assign(last, { ms, keys: [] });
  if (ms === last.ms) last.keys.push(key);

  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
  box.append(h("div", { class: "log-line", "data-stream": stream },
    h("time", { datetime: new Date(ms).toISOString(), text: clock(ms) }),
    h("span", { class: "stream", text: stream }),
    event.worker ? h("span", { class: "worker", text: event.worker }) : null,
    h("span", { class: "text", text: event.text ?? "" })));
  while (box.childElementCount > LOG_LINES_MAX) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- start

function init() {
  $("#signin").addEventListener("submit", onSignin);
  $("#signout").addEventListener("click", () => signOut(""));
  $("#error .dismiss").addEventListener("click", () => {
    errors.clear();
    renderErrors();
  });
  window.addEventListener("hashchange", route);
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
