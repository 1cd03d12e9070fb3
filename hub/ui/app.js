// Qala operator page: plain JavaScript, no framework, no build step (docs/operators.md, "The operator page").
// Talks only to the hub's API on the same origin (/v1, Authorization: Bearer <token>). The token lives in
// sessionStorage (this tab, until it is closed), never in a URL. Everything from the API is put on the page
// as text (textContent), never as HTML. Every error the API answers is shown as its `error` text.
"use strict";

(function () {
  const TOKEN_KEY = "qala.token";
  const REFRESH_MS = 5000;
  let timer = null;
  let busy = false;

  const $ = (id) => document.getElementById(id);

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One API call: the decoded JSON body, or ApiError(status, the API's `error` text).
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + (token() || "") };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, "the hub does not answer (" + exc.message + ")");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (exc) {
      data = null;
    }
    if (!response.ok) {
      const text = data && typeof data.error === "string" ? data.error : "HTTP " + response.status;
      const field = data && typeof data.field === "string" ? " (field: " + data.field + ")" : "";
      throw new ApiError(response.status, text + field);
    }
    return data;
  }

  function when(ms) {
    if (typeof ms !== "number") return "—";
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function number(value, digits) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "—";
    return String(Number(value.toFixed(digits)));
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function headerCell(row, text) {
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = text;
    row.appendChild(th);
  }

  function emptyRow(tbody, columns, text) {
    const row = tbody.insertRow();
    const td = cell(row, text, "empty");
    td.colSpan = columns;
  }

  function say(id, text, isError) {
    $(id).textContent = text;
    if (isError !== undefined) $(id).classList.toggle("error", isError);
  }

  // ------------------------------------------------------------------------------------------ the tables

  function showDistricts(data) {
    const tbody = $("districts").tBodies[0];
    tbody.replaceChildren();
    const districts = data.districts || [];
    if (districts.length === 0) emptyRow(tbody, 7, "No devices yet.");
    for (const d of districts) {
      const row = tbody.insertRow();
      headerCell(row, d.district ? d.district : "(no district)");
      cell(row, String(d.expected), "num");
      cell(row, String(d.online), "num");
      cell(row, String(d.on_time), "num");
      const coverage = typeof d.coverage === "number" ? number(d.coverage * 100, 1) + " %" : "—";
      cell(row, coverage, d.coverage < 0.5 ? "num bad" : "num");
      cell(row, number(d.aqi, 0), "num");
      cell(row, String(d.open_alerts), d.open_alerts > 0 ? "num bad" : "num");
    }
  }

  function showAlerts(data) {
    const tbody = $("alerts").tBodies[0];
    tbody.replaceChildren();
    const alerts = data.alerts || [];
    $("alerts-empty").hidden = alerts.length > 0;
    $("alerts").hidden = alerts.length === 0;
    for (const a of alerts) {
      const row = tbody.insertRow();
      row.dataset.alert = a.id;
      cell(row, a.severity, "severity-" + a.severity);
      cell(row, a.kind);
      cell(row, a.device);
      cell(row, a.quantity || "—");
      cell(row, a.district || "—");
      cell(row, a.message);
      cell(row, when(a.fired_at));
      cell(row, String(a.count), "num");
      const state = a.state === "acknowledged" && a.acked_by ? "acknowledged by " + a.acked_by : a.state;
      cell(row, state);
      const action = cell(row, "");
      if (a.state === "firing") {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Acknowledge";
        button.setAttribute("aria-label", "Acknowledge alert " + a.id + ": " + a.message);
        button.addEventListener("click", () => acknowledge(a.id, button));
        action.appendChild(button);
      }
    }
  }

  function lastValues(device) {
    const values = device.values || {};
    const parts = Object.keys(values).sort().map((q) => {
      const quality = values[q].quality;  // "range": outside the plausible range (an out_of_range alert)
      return q + " " + number(values[q].value, 2) + (quality && quality !== "ok" ? " (" + quality + ")" : "");
    });
    return parts.length ? parts.join(", ") : "—";
  }

  function actuators(device) {
    const acts = device.actuators || {};
    const parts = Object.keys(acts).sort().map((name) => {
      const spec = acts[name] || {};
      const limits = spec.limits || {};
      const range = typeof limits.min === "number" ? " [" + limits.min + "…" + limits.max + "]" : "";
      const last = spec.last === null || spec.last === undefined ? "—" : String(spec.last);
      return name + " = " + last + range;
    });
    return parts.length ? parts.join(", ") : "—";
  }

  function showDevices(data) {
    const tbody = $("devices").tBodies[0];
    tbody.replaceChildren();
    const devices = data.devices || [];
    if (devices.length === 0) emptyRow(tbody, 6, "No devices yet.");
    const names = $("device-names");
    names.replaceChildren();
    const actuatorNames = new Set();
    for (const d of devices) {
      const row = tbody.insertRow();
      headerCell(row, d.device);
      cell(row, d.district || "—");
      const state = typeof d.online === "boolean" ? (d.online ? "online" : "offline") : d.state || "—";
      cell(row, state, state === "offline" ? "bad" : "");
      cell(row, when(d.last_seen));
      cell(row, lastValues(d));
      cell(row, actuators(d));
      if (d.actuators && Object.keys(d.actuators).length) {
        const option = document.createElement("option");
        option.value = d.device;
        names.appendChild(option);
        Object.keys(d.actuators).forEach((name) => actuatorNames.add(name));
      }
    }
    const acts = $("actuator-names");
    acts.replaceChildren();
    for (const name of [...actuatorNames].sort()) {
      const option = document.createElement("option");
      option.value = name;
      acts.appendChild(option);
    }
  }

  // --------------------------------------------------------------------------------------- refreshing

  const SECTIONS = [
    ["devices", "/v1/devices", showDevices],
    ["districts", "/v1/districts", showDistricts],
    ["alerts", "/v1/alerts?state=open&limit=200", showAlerts],
  ];

  async function refresh() {
    if (!token() || busy) return;
    busy = true;
    try {
      // One call first: a wrong token is then one failure for the hub's throttle, not one per section.
      const first = await Promise.allSettled([api("GET", SECTIONS[0][1])]);
      const rest = first[0].status === "rejected" && [401, 429].includes(first[0].reason.status)
        ? [] : await Promise.allSettled(SECTIONS.slice(1).map(([, path]) => api("GET", path)));
      const results = first.concat(rest);
      for (let i = 0; i < results.length; i++) {
        const [name, , show] = SECTIONS[i];
        const result = results[i];
        if (result.status === "fulfilled") {
          say(name + "-error", "");
          show(result.value);
        } else if (result.reason.status === 401 || result.reason.status === 429) {
          signOut(result.reason.message);
          return;
        } else {
          say(name + "-error", "Cannot load " + SECTIONS[i][1].split("?")[0] + ": " + result.reason.message);
        }
      }
      showBoard();
      say("status", "Updated " + when(Date.now()) + "; refreshing every " + REFRESH_MS / 1000 + " s.");
    } finally {
      busy = false;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (token()) timer = setTimeout(refresh, REFRESH_MS);
  }

  // ------------------------------------------------------------------------------------------- actions

  async function acknowledge(id, button) {
    button.disabled = true;
    try {
      const alert = await api("POST", "/v1/alerts/" + encodeURIComponent(id) + "/ack", {});
      say("message", "Alert " + alert.id + " " + alert.state + ".", false);
    } catch (exc) {
      button.disabled = false;
      say("message", "Cannot acknowledge alert " + id + ": " + exc.message, true);
      if (exc.status === 401) signOut(exc.message);
      return;
    }
    refresh();
  }

  async function sendSetpoint(event) {
    event.preventDefault();
    const text = $("sp-value").value.trim();
    const parsed = Number(text);
    const body = {
      device: $("sp-device").value.trim(),
      actuator: $("sp-actuator").value.trim(),
      value: text !== "" && Number.isFinite(parsed) ? parsed : text,
      wait: true,
      timeout_s: 60,
    };
    const button = $("setpoint").querySelector("button");
    button.disabled = true;
    say("setpoint-result", "Sending " + body.device + "." + body.actuator + " = " + text + "…", false);
    try {
      const cmd = await api("POST", "/v1/setpoints", body);
      let outcome = "Command " + cmd.id + " " + body.device + "." + body.actuator + " = " + cmd.value + ": " + cmd.state;
      if (cmd.applied !== null && cmd.applied !== undefined) outcome += " (applied " + cmd.applied + ")";
      if (cmd.reason) outcome += " (" + cmd.reason + ")";
      say("setpoint-result", outcome + ".", cmd.state !== "applied" && cmd.state !== "sent");
    } catch (exc) {
      say("setpoint-result", "Refused: " + exc.message, true);
      if (exc.status === 401) signOut(exc.message);
    } finally {
      button.disabled = false;
    }
    refresh();
  }

  // ---------------------------------------------------------------------------------- signing in and out

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("signout").hidden = false;
  }

  function signOut(reason) {
    clearTimeout(timer);
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    say("login-error", reason || "");
    say("status", "");
    $("token").value = "";
    $("token").focus();
  }

  function signIn(event) {
    event.preventDefault();
    const given = $("token").value.trim();
    if (!given) return;
    sessionStorage.setItem(TOKEN_KEY, given);
    $("token").value = "";
    say("login-error", "");
    say("status", "Signing in…");
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("setpoint").addEventListener("submit", sendSetpoint);
    $("signout").addEventListener("click", () => signOut(""));
    if (token()) refresh();
    else signOut("");
  });
})();
