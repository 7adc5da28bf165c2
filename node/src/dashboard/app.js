// The raynode dashboard. Every REFRESH_MS it asks the node it is served by
// for the cluster's tables (/api/nodes, tasks, actors, objects, events,
// jobs) in one go and renders every section from the answers; a failed
// round leaves the last rendering in place under an error banner. Text from
// the cluster reaches the page only as text nodes and attribute values.
"use strict";

const REFRESH_MS = 2000;
const MAX_ROWS = 500;
const ERROR_CHARS = 200;
const TIMELINE_WINDOW_MS = 60000;
const TIMELINE_MAX_BARS = 2000;
const ENDPOINTS = ["nodes", "tasks", "actors", "objects", "events", "jobs"];
const TASK_STATES = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING",
  "FINISHED", "FAILED"];
const ACTOR_STATE_ORDER = { PENDING_CREATION: 0, ALIVE: 1, RESTARTING: 2, DEAD: 3 };
const BYTE_RESOURCES = new Set(["memory", "object_store_memory"]);
// What a cookie value may hold (RFC 6265 cookie-octet).
const COOKIE_VALUE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/;
const SVG_NS = "http://www.w3.org/2000/svg";

let last = null; // the latest complete answers, by endpoint name
let clockSkewMs = 0; // the node's clock minus ours, when they differ by more than the Date header's second
let loaded = false;

class Unauthorized extends Error {}

// Building elements

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function tbody(tableId) {
  return document.querySelector(`#${tableId} tbody`);
}

function setText(id, text, title) {
  const node = document.getElementById(id);
  node.textContent = text;
  if (title !== undefined) node.title = title;
}

// Formatting

const present = (v) => v !== null && v !== undefined;
const finite = (v) => present(v) && v !== "" && Number.isFinite(Number(v));
const dash = (v) => (present(v) && v !== "" ? String(v) : "-");
const short = (id) => (id ? String(id).slice(0, 8) : "-");
// Task, actor and object ids begin with their owner's tag, shared by all of
// its ids: their own part is the counter at the end (and an object's index).
const shortTail = (id) => (id ? String(id).slice(-8) : "-");
const shortObject = (id) => (id ? `${String(id).slice(-16, -8)}:${parseInt(String(id).slice(-8), 16)}` : "-");
const num = (v) => (finite(v) ? String(Math.round(Number(v) * 100) / 100) : "-");

function bytes(n) {
  if (!finite(n)) return "-";
  let value = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${i === 0 ? value : value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[i]}`;
}

function duration(ms) {
  if (!finite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function localTime(ms) {
  if (!finite(ms)) return "-";
  const d = new Date(Number(ms));
  const p = (n, width = 2) => String(n).padStart(width, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} `
    + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function clusterNow() {
  return Date.now() + clockSkewMs;
}

function countBy(rows, key) {
  const counts = {};
  for (const row of rows) counts[key(row)] = (counts[key(row)] || 0) + 1;
  return counts;
}

// Cells

const idCell = (id, shorten = short) => el("td", { class: "mono", title: id || null }, shorten(id));
const numCell = (v) => el("td", { class: "num" }, num(v));
const stateBadge = (state) => el("span", { class: `state state-${state || "none"}` }, dash(state));

function textCell(text, limit) {
  if (!text) return el("td", {}, "-");
  return el("td", { class: "error-text", title: text.length > limit ? text : null }, truncate(text, limit));
}

function usedOfTotal(total, available, format) {
  if (!finite(total)) return "-";
  const used = finite(available) ? format(Number(total) - Number(available)) : "-";
  return `${used} / ${format(total)}`;
}

function otherResources(total, available) {
  const names = Object.keys(total).filter((name) => name !== "CPU").sort();
  if (names.length === 0) return "-";
  return names.map((name) => {
    const format = BYTE_RESOURCES.has(name) ? bytes : num;
    return `${name} ${usedOfTotal(total[name], available[name], format)}`;
  }).join(", ");
}

function storeBar(used, capacity) {
  const text = `${bytes(used)} / ${bytes(capacity)}`;
  if (!finite(used) || !finite(capacity) || Number(capacity) <= 0) return el("td", { class: "num" }, text);
  const pct = Math.min(100, (100 * Number(used)) / Number(capacity));
  const level = el("span", { class: "fill" });
  level.style.width = `${pct.toFixed(1)}%`;
  return el("td", { class: "num", title: `${pct.toFixed(1)}% used` }, text, el("span", { class: "meter" }, level));
}

function dashboardLink(address) {
  if (!address) return el("td", {}, "-");
  const hostPort = String(address).replace(/^https?:\/\//, "").replace(/\/$/, "");
  if (!/^[A-Za-z0-9.\-[\]:]+$/.test(hostPort)) return el("td", {}, String(address));
  const scheme = String(address).startsWith("https://") ? "https" : "http";
  return el("td", {}, el("a", { href: `${scheme}://${hostPort}/` }, hostPort));
}

// Sections

function renderSummary() {
  const nodes = last.nodes.rows;
  const alive = nodes.filter((n) => n.alive === true);
  const leader = alive.find((n) => n.is_leader === true);
  let total = 0;
  let used = 0;
  for (const n of alive) {
    const cpus = Number((n.resources_total || {}).CPU) || 0;
    const free = (n.resources_available || {}).CPU;
    total += cpus;
    used += finite(free) ? cpus - Number(free) : 0;
  }
  setText("sum-nodes", `${alive.length} / ${nodes.length}`);
  setText("sum-leader", leader ? short(leader.node_id) : "none", leader ? leader.node_id : "");
  setText("sum-cpus", `${num(used)} / ${num(total)}`);
  const counts = countBy(last.tasks.rows, (t) => t.state);
  const states = TASK_STATES.filter((s) => counts[s]);
  const tasks = document.getElementById("sum-tasks");
  tasks.replaceChildren(...(states.length ? states.map((s) => el("span", { class: "tally" },
    stateBadge(s), ` ${counts[s]}`)) : ["none"]));
}

function renderWarnings() {
  const seen = new Map();
  for (const name of ENDPOINTS) {
    for (const m of last[name].missing) seen.set(`${m.node_id}\n${m.error}`, m);
  }
  const list = document.getElementById("warnings");
  list.replaceChildren(...[...seen.values()].map((m) => el("li", { title: m.node_id || null },
    `node ${short(m.node_id)} did not answer: ${dash(m.error)}`)));
  list.hidden = seen.size === 0;
}

function nodeRow(n) {
  const total = n.resources_total || {};
  const available = n.resources_available || {};
  const alive = n.alive === true;
  const classes = [n.is_leader === true ? "leader" : "", alive ? "" : "dead"].filter(Boolean).join(" ");
  return el("tr", { "data-node-id": n.node_id, class: classes || null },
    idCell(n.node_id),
    el("td", {}, stateBadge(alive ? "ALIVE" : "DEAD")),
    el("td", { class: "role" }, n.raft_role || (n.is_leader === true ? "leader" : "-")),
    el("td", { class: "num" }, usedOfTotal(total.CPU, available.CPU, num)),
    el("td", {}, otherResources(total, available)),
    el("td", { class: "num" }, `${num(n.busy_workers)} / ${num(n.workers)}`),
    numCell(n.queued_tasks), numCell(n.tasks), numCell(n.actors), numCell(n.objects),
    storeBar(n.store_used_bytes, n.store_capacity_bytes),
    el("td", { class: "num" }, bytes(n.spilled_bytes)),
    el("td", { class: "num" }, bytes(n.rss_bytes)),
    dashboardLink(n.dashboard_address));
}

function renderNodes() {
  const nodes = [...last.nodes.rows].sort((a, b) => String(a.node_id).localeCompare(String(b.node_id)));
  tbody("nodes-table").replaceChildren(...nodes.map(nodeRow));
  tbody("memory-table").replaceChildren(...nodes.map((n) => el("tr", { class: n.alive === true ? null : "dead" },
    idCell(n.node_id),
    storeBar(n.store_used_bytes, n.store_capacity_bytes),
    el("td", { class: "num" }, bytes(n.spilled_bytes)),
    numCell(n.objects),
    el("td", { class: "num" }, bytes(n.rss_bytes)))));
}

function setCount(id, shown, total, what) {
  setText(id, shown === total ? `${total} ${what}` : `${total} ${what}, ${shown} shown`);
}

function renderActors() {
  const order = (a) => ACTOR_STATE_ORDER[a.state] ?? 9;
  const actors = [...last.actors.rows].sort((a, b) => order(a) - order(b)
    || String(a.class_name).localeCompare(String(b.class_name)));
  const shown = actors.slice(0, MAX_ROWS);
  setCount("actors-count", shown.length, actors.length, "actors");
  tbody("actors-table").replaceChildren(...shown.map((a) => el("tr",
    { "data-actor-id": a.actor_id, "data-state": a.state },
    idCell(a.actor_id, shortTail),
    el("td", {}, dash(a.class_name)),
    el("td", { title: a.name ? `namespace ${dash(a.ray_namespace)}` : null }, a.name || "-"),
    el("td", {}, stateBadge(a.state)),
    idCell(a.node_id),
    numCell(a.pid),
    numCell(a.num_restarts),
    textCell(a.death_cause ? String(a.death_cause) : "", ERROR_CHARS))));
}

function taskDuration(t) {
  if (!finite(t.start_time_ms)) return "-";
  const end = finite(t.end_time_ms) ? Number(t.end_time_ms) : t.state === "RUNNING" ? clusterNow() : null;
  return end === null ? "-" : duration(end - Number(t.start_time_ms));
}

function renderTaskSummary(tasks) {
  const groups = new Map();
  for (const t of tasks) {
    const name = String(t.func_or_class_name || t.name || "-");
    const key = `${name}\n${t.type}`;
    if (!groups.has(key)) groups.set(key, { name, type: t.type, total: 0, counts: {} });
    const group = groups.get(key);
    group.total += 1;
    group.counts[t.state] = (group.counts[t.state] || 0) + 1;
  }
  const sorted = [...groups.values()]
    .sort((a, b) => a.name.localeCompare(b.name) || String(a.type).localeCompare(String(b.type)));
  tbody("task-summary").replaceChildren(...sorted.map((g) => el("tr", { "data-func": g.name },
    el("td", {}, g.name), el("td", {}, dash(g.type)), numCell(g.total),
    ...TASK_STATES.map((s) => el("td", { class: "num" }, g.counts[s] ? String(g.counts[s]) : "")))));
}

function renderTasks() {
  const tasks = last.tasks.rows;
  const state = document.getElementById("task-state-filter").value;
  const needle = document.getElementById("task-name-filter").value.trim().toLowerCase();
  const matches = (t) => (state === "all" || t.state === state) && (!needle
    || String(t.name || "").toLowerCase().includes(needle)
    || String(t.func_or_class_name || "").toLowerCase().includes(needle));
  const newestFirst = (a, b) => (Number(b.creation_time_ms) || 0) - (Number(a.creation_time_ms) || 0);
  const matching = tasks.filter(matches).sort(newestFirst);
  const shown = matching.slice(0, MAX_ROWS);
  setText("tasks-count", `${shown.length} shown, newest first; ${matching.length} of ${tasks.length} tasks match`);
  tbody("tasks-table").replaceChildren(...shown.map((t) => {
    const error = [t.error_type, t.error_message].filter((s) => s).join(": ");
    const attempt = Number(t.attempt_number) > 0 ? ` #${t.attempt_number}` : "";
    return el("tr", { "data-task-id": t.task_id, "data-state": t.state },
      el("td", { class: "mono", title: t.task_id || null }, shortTail(t.task_id) + attempt),
      el("td", {}, dash(t.name)),
      el("td", {}, dash(t.type)),
      el("td", {}, stateBadge(t.state)),
      idCell(t.node_id),
      numCell(t.worker_pid),
      el("td", { class: "nowrap" }, localTime(t.creation_time_ms)),
      el("td", { class: "num" }, taskDuration(t)),
      textCell(error, ERROR_CHARS));
  }));
  renderTaskSummary(tasks);
}

function renderEvents() {
  const events = last.events.rows;
  const shown = events.slice(-MAX_ROWS).reverse();
  setCount("events-count", shown.length, events.length, "events, newest first");
  tbody("events-table").replaceChildren(...shown.map((e) => el("tr", { "data-kind": e.kind },
    el("td", { class: "mono nowrap" }, localTime(e.time)),
    el("td", {}, dash(e.kind)),
    idCell(e.source_node),
    el("td", {}, dash(e.message)))));
}

function renderObjects() {
  // Rows carry no creation time: the last rows listed are taken as the newest.
  const objects = last.objects.rows;
  const shown = objects.slice(-MAX_ROWS).reverse();
  setCount("objects-count", shown.length, objects.length, "objects");
  tbody("objects-table").replaceChildren(...shown.map((o) => el("tr",
    { "data-object-id": o.object_id, "data-state": o.state, class: o.error === true ? "failed" : null },
    idCell(o.object_id, shortObject),
    el("td", { class: "num" }, bytes(o.object_size)),
    el("td", {}, stateBadge(o.state), o.error === true ? " (error)" : ""),
    el("td", {}, dash(o.location)),
    numCell(o.ref_count),
    idCell(o.node_id),
    idCell(o.owner_node_id))));
}

function renderJobs() {
  const jobs = [...last.jobs.rows].sort((a, b) => (Number(b.start_time) || 0) - (Number(a.start_time) || 0));
  tbody("jobs-table").replaceChildren(...jobs.map((j) => {
    const end = finite(j.end_time) ? Number(j.end_time) : j.status === "RUNNING" ? clusterNow() : null;
    return el("tr", { "data-job-id": j.job_id, "data-status": j.status },
      el("td", { class: "mono" }, dash(j.job_id)),
      el("td", {}, stateBadge(j.status)),
      idCell(j.driver_node_id),
      numCell(j.driver_pid),
      el("td", { class: "nowrap" }, localTime(j.start_time)),
      el("td", { class: "nowrap" }, localTime(j.end_time)),
      el("td", { class: "num" }, end !== null && finite(j.start_time) ? duration(end - Number(j.start_time)) : "-"));
  }));
}

function renderTimeline() {
  const WIDTH = 1200;
  const LABEL = 170;
  const TOP = 22;
  const LANE = 20;
  const plot = WIDTH - LABEL - 12;
  const started = last.tasks.rows.filter((t) => finite(t.start_time_ms));
  let end = 0;
  for (const t of started) end = Math.max(end, Number(t.start_time_ms), Number(t.end_time_ms) || 0);
  if (started.some((t) => t.state === "RUNNING" && !finite(t.end_time_ms))) end = Math.max(end, clusterNow());
  const start = end - TIMELINE_WINDOW_MS;
  const bars = started
    .map((t) => ({ t, from: Number(t.start_time_ms), to: finite(t.end_time_ms) ? Number(t.end_time_ms) : end }))
    .filter((b) => b.to >= start)
    .sort((a, b) => b.from - a.from)
    .slice(0, TIMELINE_MAX_BARS);
  const laneOf = (t) => `${short(t.node_id)} : ${present(t.worker_pid) ? t.worker_pid : "?"}`;
  const lanes = [...new Set(bars.map((b) => laneOf(b.t)))]
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const laneIndex = new Map(lanes.map((lane, i) => [lane, i]));
  const height = TOP + Math.max(1, lanes.length) * LANE + 6;
  const x = (ms) => LABEL + ((Math.min(end, Math.max(start, ms)) - start) / TIMELINE_WINDOW_MS) * plot;

  const parts = [];
  for (let s = 0; s <= 60; s += 10) {
    const at = LABEL + (s / 60) * plot;
    parts.push(svg("line", { class: "tick", x1: at, x2: at, y1: TOP - 4, y2: height }));
    const label = s === 60 ? "0 s" : `-${60 - s} s`;
    parts.push(svg("text", { class: "axis", x: at, y: TOP - 8, "text-anchor": "middle" }, label));
  }
  lanes.forEach((lane, i) => {
    const y = TOP + i * LANE;
    parts.push(svg("rect", { class: i % 2 ? "lane odd" : "lane", x: 0, y, width: WIDTH, height: LANE }));
    parts.push(svg("text", { class: "lane-label", x: 6, y: y + LANE - 6 }, lane));
  });
  for (const { t, from, to } of bars) {
    const y = TOP + laneIndex.get(laneOf(t)) * LANE + 3;
    const left = x(from);
    parts.push(svg("rect", {
      class: `bar bar-${t.state}`, x: left.toFixed(1), y, height: LANE - 6,
      width: Math.max(2, x(to) - left).toFixed(1), "data-task-id": t.task_id,
    }, svg("title", {}, `${dash(t.name)}: ${duration(to - from)} (${dash(t.state)})`)));
  }
  if (bars.length === 0) {
    parts.push(svg("text", { class: "axis", x: LABEL, y: TOP + LANE - 6 }, "No task ran in this window."));
  }
  const node = document.getElementById("timeline-svg");
  node.setAttribute("height", height);
  node.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  node.replaceChildren(...parts);
}

function render() {
  renderSummary();
  renderWarnings();
  renderNodes();
  renderActors();
  renderTasks();
  renderEvents();
  renderObjects();
  renderJobs();
  renderTimeline();
}

// Fetching

async function fetchJson(name) {
  const response = await fetch(`/api/${name}`, { cache: "no-store", credentials: "same-origin" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(`/api/${name} answered HTTP ${response.status}`);
  const date = Date.parse(response.headers.get("Date") || "");
  if (Number.isFinite(date)) clockSkewMs = Math.abs(date - Date.now()) > 2000 ? date - Date.now() : 0;
  const body = await response.json();
  return {
    rows: Array.isArray(body.rows) ? body.rows : [],
    missing: Array.isArray(body.missing) ? body.missing : [],
  };
}

function showError(message) {
  const banner = document.getElementById("error-banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

// One round: true if polling should go on.
async function refresh() {
  try {
    const answers = await Promise.all(ENDPOINTS.map(fetchJson));
    last = Object.fromEntries(ENDPOINTS.map((name, i) => [name, answers[i]]));
    render();
    showError(null);
    setText("updated", `Last updated ${localTime(Date.now())}`);
    if (!loaded) {
      loaded = true;
      document.body.dataset.loaded = "1";
    }
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) {
      showLogin();
      return false;
    }
    showError(`Could not refresh: ${e.message}${last ? " (the tables show the last answers)" : ""}`);
    return true;
  }
}

function poll() {
  refresh().then((again) => {
    if (again) setTimeout(poll, REFRESH_MS);
  });
}

// Signing in

function hasTokenCookie() {
  return document.cookie.split(";").some((c) => c.trim().startsWith("raynode_token="));
}

function showLoginError(message) {
  const node = document.getElementById("login-error");
  node.textContent = message;
  node.hidden = !message;
}

function showLogin() {
  document.getElementById("content").hidden = true;
  document.getElementById("login").hidden = false;
  setText("updated", "Sign in to see the cluster");
  if (hasTokenCookie()) showLoginError("The node did not accept the token this browser holds.");
  document.getElementById("login-token").focus();
}

function onLogin(event) {
  event.preventDefault();
  const token = document.getElementById("login-token").value.trim();
  if (!COOKIE_VALUE.test(token)) {
    showLoginError("That is not a token: a token has no spaces, quotes, commas, semicolons or backslashes.");
    return;
  }
  document.cookie = `raynode_token=${token}; path=/; SameSite=Strict`;
  window.location.reload();
}

function start() {
  document.getElementById("login").addEventListener("submit", onLogin);
  const rerender = () => {
    if (last) renderTasks();
  };
  document.getElementById("task-state-filter").addEventListener("change", rerender);
  document.getElementById("task-name-filter").addEventListener("input", rerender);
  poll();
}

start();
