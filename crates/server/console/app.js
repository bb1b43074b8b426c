// edgefleet console: plain JavaScript over the REST API (session cookie + CSRF header), no build step.
(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  // A choice made here (or the user's saved language, after sign-in) wins; a first visit follows
  // the browser's languages (any Chinese first → Chinese).
  const browserLang = () => ((navigator.languages || [navigator.language || ""]).find((l) => /^(zh|en)\b/i.test(l)) || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  let lang = ["zh", "en"].includes(localStorage.getItem("lang")) ? localStorage.getItem("lang") : browserLang();
  // An agent-mode service is reached through its agent; its endpoint is only where the agent finds NeuronEX.
  const reachOf = (e) => e.transport === "agent"
    ? `<span class="tag" title="${esc(t("edges.agent_hint"))}">${esc(t("edges.via_agent", { id: e.agent_id }))}</span> ${esc(e.endpoint)}`
    : esc(e.endpoint);
  const t = (key, vars = {}) => (window.I18N[lang][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ""));
  // The translation of `key` when the console has one, else `fallback` (a newer server's word).
  const known = (key, fallback) => (window.I18N[lang][key] ?? window.I18N.en[key] ?? fallback);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const when = (ms) => (ms ? new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "");
  const state = { me: null, projects: [], project: localStorage.getItem("project") || "" };

  // An API error answer as an Error with its status, stable code and details.
  function answerError(status, data, statusText) {
    const error = new Error(data?.error?.message || statusText);
    return Object.assign(error, { status, code: data?.error?.code, details: data?.error?.details || {} });
  }

  async function api(method, path, body) {
    const headers = {};
    let payload = body;
    if (method !== "GET") headers["x-edgefleet-csrf"] = "1";
    if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!response.ok) {
      const error = answerError(response.status, data, response.statusText);
      if (response.status === 401 && !path.endsWith("/auth/login")) { state.me = null; location.hash = "#/login"; }
      throw error;
    }
    return data;
  }
  const P = (path) => `/api/v1/projects/${encodeURIComponent(state.project)}${path}`;

  // `key`'s text with `{name}` filled from `details`, or nothing when the console has no such
  // text or the answer lacks one of its parameters (a sentence with a hole is worse than none).
  function withParameters(key, details) {
    const text = window.I18N[lang][key];
    if (!text) return null;
    const names = [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    const given = (v) => typeof v === "string" || typeof v === "number";
    return names.every((n) => given(details?.[n])) ? t(key, details) : null;
  }

  // An error shown next to what caused it: the field named by the API, else a banner.
  function showError(root, error) {
    $$(".error, .banner-error", root).forEach((e) => e.remove());
    const field = error.details?.field || (error.message.match(/^(\w+(\.\w+)?):/) || [])[1];
    const input = field && root.querySelector(`[name="${field.split(".")[0]}"]`);
    const box = document.createElement("div");
    box.className = input ? "error" : "banner-error";
    box.setAttribute("role", "alert");
    // In Chinese the error leads in Chinese (with its parameters from `details` where the answer
    // has them all, else the code's general meaning) and the server's English message (which
    // names the exact field, value or object) follows; in English the message says it all.
    const meaning = lang !== "en" && error.code && (withParameters(`errp.${error.code}`, error.details) || window.I18N[lang][`err.${error.code}`]);
    box.textContent = meaning || error.message;
    if (meaning) {
      box.dataset.code = error.code;
      const detail = document.createElement("div");
      detail.className = "muted detail";
      detail.lang = "en";
      detail.textContent = error.message;
      box.append(detail);
    }
    const problems = error.details?.problems;
    if (Array.isArray(problems) && problems.length > 1) {
      const list = document.createElement("ul");
      problems.forEach((p) => { const li = document.createElement("li"); li.textContent = p.path ? `${p.path}: ${p.message}` : String(p.message ?? JSON.stringify(p)); list.append(li); });
      box.append(list);
    }
    if (input) { input.setAttribute("aria-invalid", "true"); input.insertAdjacentElement("afterend", box); input.focus(); }
    else root.prepend(box);
  }

  // `edited` (optional) tells whether the dialog holds edits; Esc and Close then ask before
  // throwing them away.
  function dialog(html, onClose, edited) {
    const root = $("#dialog-root");
    const backdrop = document.createElement("div");
    backdrop.className = "dialog-backdrop";
    backdrop.innerHTML = `<div class="dialog" role="dialog" aria-modal="true">${html}</div>`;
    root.append(backdrop);
    const close = () => { backdrop.remove(); onClose?.(); };
    const leave = () => { if (!edited?.() || confirm(t("common.discard_confirm"))) close(); };
    backdrop.addEventListener("keydown", (e) => { if (e.key === "Escape") leave(); });
    $$("[data-close]", backdrop).forEach((b) => b.addEventListener("click", leave));
    setTimeout(() => ($("input, textarea, select, button", backdrop.firstElementChild) || backdrop).focus(), 0);
    return { el: backdrop.firstElementChild, close };
  }

  // `estimated`: the server answered an estimate of the total (many matches on PostgreSQL).
  function pager(total, offset, limit, go, estimated = false) {
    const box = document.createElement("div");
    box.className = "pager";
    const to = Math.min(total, offset + limit);
    box.innerHTML = `<button type="button" class="secondary" ${offset === 0 ? "disabled" : ""}>${t("common.previous")}</button>
      <span>${esc(t("common.page", { from: total ? offset + 1 : 0, to, total: howMany(total, estimated) }))}</span>
      <button type="button" class="secondary" ${to >= total ? "disabled" : ""}>${t("common.next_page")}</button>`;
    const [prev, next] = $$("button", box);
    prev.addEventListener("click", () => go(Math.max(0, offset - limit)));
    next.addEventListener("click", () => go(offset + limit));
    return box;
  }

  function howMany(n, estimated) {
    return estimated ? t("common.about", { n }) : n;
  }

  function marker(status) {
    if (status === "failed") return `<span class="bang" title="${esc(t("state.failed"))}" aria-label="${esc(t("state.failed"))}">!</span>`;
    return `<span class="dot ${esc(status)}" title="${esc(t("state." + status))}" aria-label="${esc(t("state." + status))}"></span>`;
  }

  function download(name, text, type = "application/json") {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
  }

  // ----- shell -----

  async function loadProjects() {
    const orgs = await api("GET", "/api/v1/orgs");
    const projects = [];
    for (const org of orgs.items) {
      const list = await api("GET", `/api/v1/orgs/${org.id}/projects`).catch(() => ({ items: [] }));
      list.items.forEach((p) => projects.push({ id: p.id, label: `${org.name} / ${p.name}` }));
    }
    state.projects = projects;
    // Administration shows to users who administer something: the server answers the user list
    // only to a system, organization or project admin.
    state.canAdmin = state.me?.is_system_admin || await api("GET", "/api/v1/users?limit=1").then(() => true, () => false);
    if (!projects.some((p) => p.id === state.project)) state.project = projects[0]?.id || "";
    localStorage.setItem("project", state.project);
  }

  function renderShell(page) {
    const top = $("#top");
    top.hidden = !state.me;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    if (!state.me) return;
    const pages = [["edges", "nav.edges"], ["config", "nav.config"], ["deliveries", "nav.deliveries"], ["rollouts", "nav.rollouts"], ["inventory", "nav.inventory"], ["audit", "nav.audit"]];
    if (state.canAdmin) pages.push(["admin", "nav.admin"]);
    $("#nav").innerHTML = pages.map(([id, key]) => `<a href="#/${id}" class="${page === id ? "active" : ""}">${esc(t(key))}</a>`).join("");
    $("#project-label").textContent = t("app.project");
    $("#project").innerHTML = state.projects.map((p) => `<option value="${esc(p.id)}" ${p.id === state.project ? "selected" : ""}>${esc(p.label)}</option>`).join("");
    $("#lang").textContent = t("app.language");
    $("#whoami").textContent = state.me.username;
    $("#logout").textContent = t("app.signout");
  }

  async function route() {
    const page = (location.hash.match(/^#\/(\w+)/) || [])[1] || "edges";
    if (!state.me) {
      try {
        state.me = await api("GET", "/api/v1/me");
        if (state.me.language === "zh" || state.me.language === "en") { lang = state.me.language; localStorage.setItem("lang", lang); }
        await loadProjects();
      } catch { state.me = null; }
    }
    if (!state.me) { renderShell(); return renderLogin(); }
    renderShell(page);
    const main = $("#main");
    main.innerHTML = "";
    if (!state.project && page !== "admin" && page !== "audit") {
      main.innerHTML = `<p class="notice">${esc(t("app.noproject"))}</p>`;
      return;
    }
    const render = { edges: renderEdges, config: renderConfig, deliveries: renderHistory, rollouts: renderRollouts, inventory: renderInventory, audit: renderAudit, admin: renderAdmin }[page] || renderEdges;
    try { await render(main); } catch (error) { showError(main, error); }
  }

  function renderLogin() {
    const main = $("#main");
    main.innerHTML = `<form class="login" id="login-form">
      <h1>edgefleet</h1>
      <label>${esc(t("app.username"))}<input name="username" autocomplete="username" required></label>
      <label>${esc(t("app.password"))}<input name="password" type="password" autocomplete="current-password" required></label>
      <div class="row"><button type="submit">${esc(t("app.signin"))}</button>
      <button type="button" class="link" id="login-lang">${esc(t("app.language"))}</button></div></form>`;
    $("#login-lang").addEventListener("click", () => { lang = lang === "en" ? "zh" : "en"; localStorage.setItem("lang", lang); renderLogin(); });
    $("#login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = new FormData(e.target);
      try {
        await api("POST", "/api/v1/auth/login", { username: form.get("username"), password: form.get("password") });
        state.me = null;
        location.hash = "#/edges";
        await route();
      } catch (error) { showError(e.target, error); }
    });
    $("input", main).focus();
  }

  // ----- edge services -----

  async function renderEdges(main, offset = 0, filters = {}) {
    main.innerHTML = `<h1>${esc(t("edges.title"))}</h1>
      <form class="row" id="edge-filters">
        <label>${esc(t("common.search"))}<input name="q" value="${esc(filters.q)}"></label>
        <label>${esc(t("common.name"))}<input name="name" value="${esc(filters.name)}"></label>
        <label>${esc(t("common.endpoint"))}<input name="endpoint" value="${esc(filters.endpoint)}"></label>
        <label>${esc(t("common.version"))}<input name="version" value="${esc(filters.version)}"></label>
        <label>${esc(t("common.tag"))}<input name="tag" value="${esc(filters.tag)}"></label>
        <label>${esc(t("common.status"))}<select name="status"><option value="">${esc(t("common.all"))}</option>
          ${["online", "offline", "unknown"].map((s) => `<option value="${s}" ${filters.status === s ? "selected" : ""}>${esc(t("edges." + s))}</option>`).join("")}</select></label>
        <label>${esc(t("drift.config"))}<select name="config_state"><option value="">${esc(t("common.all"))}</option>
          ${DRIFT_STATES.map((s) => `<option value="${s}" ${filters.config_state === s ? "selected" : ""}>${esc(t("drift." + s))}</option>`).join("")}</select></label>
        <button type="submit">${esc(t("common.search"))}</button>
      </form>
      <div class="row"><label>${esc(t("edges.import"))}<input type="file" name="import" accept=".csv,.json"></label></div>
      <div id="edge-table"></div>`;
    $("#edge-filters").addEventListener("submit", (e) => { e.preventDefault(); renderEdges(main, 0, Object.fromEntries(new FormData(e.target))); });
    $('[name="import"]', main).addEventListener("change", async (e) => {
      const file = e.target.files[0];
      if (!file) return;
      try {
        const body = await file.text();
        const answer = await fetch(P("/edge-services/import"), { method: "POST", credentials: "same-origin", headers: { "x-edgefleet-csrf": "1", "content-type": file.name.endsWith(".csv") ? "text/csv" : "application/json" }, body });
        const data = await answer.json();
        if (!answer.ok) throw answerError(answer.status, data, answer.statusText);
        main.insertAdjacentHTML("afterbegin", `<p class="notice" role="status">${esc(t("edges.imported", { n: data.total }))}</p>`);
        renderEdgeTable(main, 0, filters);
      } catch (error) { showError(main, error); }
    });
    await renderEdgeTable(main, offset, filters);
  }

  // The chosen edge services, kept across pages and filters until delivered to or cleared.
  const edgeChoice = new Map();

  async function renderEdgeTable(main, offset, filters) {
    const params = new URLSearchParams({ limit: 50, offset });
    Object.entries(filters).forEach(([k, v]) => v && params.append(k, v));
    const [data, project] = await Promise.all([api("GET", P(`/edge-services?${params}`)), api("GET", P(""))]);
    const admin = project.role === "admin";
    const box = $("#edge-table", main);
    box.innerHTML = `${admin ? `<div class="row" id="edge-choice"><span role="status" id="edge-chosen"></span>
        <button type="button" id="deliver-these" disabled>${esc(t("edges.deliver_these"))}</button>
        <button type="button" class="link" id="clear-chosen">${esc(t("edges.clear_chosen"))}</button></div>` : ""}
      <table><thead><tr>${admin ? `<th><input type="checkbox" id="choose-page" aria-label="${esc(t("edges.choose_page"))}"></th>` : ""}<th>${esc(t("common.status"))}</th><th>${esc(t("common.name"))}</th><th>${esc(t("common.endpoint"))}</th>
      <th>${esc(t("common.version"))}</th><th>${esc(t("common.tags"))}</th><th>${esc(t("drift.config"))}</th><th>${esc(t("edges.reason"))}</th>${admin ? `<th>${esc(t("common.actions"))}</th>` : ""}</tr></thead><tbody>
      ${data.items.map((e) => `<tr data-id="${esc(e.id)}" data-name="${esc(e.name)}">${admin ? `<td><input type="checkbox" data-choose aria-label="${esc(e.name)}" ${edgeChoice.has(e.id) ? "checked" : ""}></td>` : ""}
        <td class="nowrap">${marker(e.status === "online" ? "succeeded" : e.status === "offline" ? "failed" : "pending")} ${esc(t("edges." + e.status))}</td>
        <td title="${esc(e.description || "")}">${esc(e.name)}</td><td>${reachOf(e)}</td><td>${esc(e.version || "")}</td>
        <td>${e.tags.map((tag) => `<span class="tag">${esc(tag)}</span>`).join("")}</td>
        <td>${e.config_state === "none" ? `<span class="muted">${esc(t("drift.none"))}</span>` : `<button type="button" class="badge ${esc(e.config_state)}" data-drift title="${esc(e.config_reason || "")}">${esc(t("drift." + e.config_state))}</button>`}</td>
        <td class="muted">${esc(e.status_reason)}</td>
        ${admin ? `<td class="actions"><button type="button" class="link" data-act="probe">${esc(t("edges.probe"))}</button>
          <button type="button" class="link" data-act="edit">${esc(t("edges.edit"))}</button>
          <button type="button" class="link" data-act="delete">${esc(t("common.delete"))}</button></td>` : ""}</tr>`).join("")}
      </tbody></table>`;
    const again = () => renderEdgeTable(main, offset, filters);
    box.append(pager(data.total, offset, 50, (o) => renderEdgeTable(main, o, filters), data.total_estimated));
    $$("[data-drift]", box).forEach((b) => b.addEventListener("click", () => {
      const edge = data.items.find((x) => x.id === b.closest("tr").dataset.id);
      openDrift(edge, again).catch((error) => showError(main, error));
    }));
    if (!admin) return;
    const showChoice = () => {
      $("#edge-chosen", box).textContent = t("wiz.selected", { n: edgeChoice.size });
      $("#deliver-these", box).disabled = edgeChoice.size === 0;
      const boxes = $$("[data-choose]", box);
      $("#choose-page", box).checked = boxes.length > 0 && boxes.every((c) => c.checked);
    };
    const choose = (row, on) => { if (on) edgeChoice.set(row.dataset.id, row.dataset.name); else edgeChoice.delete(row.dataset.id); };
    $$("[data-choose]", box).forEach((c) => c.addEventListener("change", () => { choose(c.closest("tr"), c.checked); showChoice(); }));
    $("#choose-page", box).addEventListener("change", (e) => {
      $$("[data-choose]", box).forEach((c) => { c.checked = e.target.checked; choose(c.closest("tr"), c.checked); });
      showChoice();
    });
    $("#clear-chosen", box).addEventListener("click", () => { edgeChoice.clear(); again(); });
    $("#deliver-these", box).addEventListener("click", () => {
      state.deliverTo = new Map(edgeChoice);
      location.hash = "#/config";
    });
    showChoice();
    $$("[data-act]", box).forEach((b) => b.addEventListener("click", async () => {
      const row = b.closest("tr");
      const edge = data.items.find((x) => x.id === row.dataset.id);
      try {
        if (b.dataset.act === "probe") {
          b.disabled = true;
          await api("POST", P(`/edge-services/${edge.id}/probe`), {});
          return again();
        }
        if (b.dataset.act === "edit") return openEdgeEditor(edge, again);
        if (!confirm(t("edges.delete_confirm", { name: edge.name }))) return;
        await api("DELETE", P(`/edge-services/${edge.id}`));
        edgeChoice.delete(edge.id);
        again();
      } catch (error) { b.disabled = false; showError(box, error); }
    }));
  }

  // Edits what people name and find a service by; the endpoint of an HTTP service too.
  function openEdgeEditor(edge, changed) {
    const agent = edge.transport === "agent";
    const d = dialog(`<header><h2>${esc(t("edges.edit_title", { name: edge.name }))}</h2></header>
      <form id="edge-editor">
        <label>${esc(t("common.name"))}<input name="name" value="${esc(edge.name)}" required maxlength="128"></label>
        ${agent ? "" : `<label>${esc(t("common.endpoint"))}<input name="endpoint" value="${esc(edge.endpoint)}" required></label>`}
        <label>${esc(t("common.description"))}<input name="description" value="${esc(edge.description || "")}"></label>
        <label>${esc(t("edges.tags_comma"))}<input name="tags" value="${esc(edge.tags.join(", "))}"></label>
        <div class="row"><button type="submit">${esc(t("common.save"))}</button><button type="button" class="secondary" data-close>${esc(t("common.cancel"))}</button></div>
      </form>`);
    $("#edge-editor", d.el).addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = e.target;
      const patch = { name: form.name.value.trim(), description: form.description.value, tags: form.tags.value.split(",").map((x) => x.trim()).filter(Boolean) };
      if (!agent) patch.endpoint = form.endpoint.value.trim();
      try {
        await api("PATCH", P(`/edge-services/${edge.id}`), patch);
        d.close();
        changed();
      } catch (error) { showError(form, error); }
    });
  }

  // ----- drift: what an edge holds of what was delivered, putting it back or keeping it -----

  const DRIFT_STATES = ["in_sync", "drifted", "unknown", "none"];

  // One JSON Patch operation as a line people read.
  const patchLine = (op) => `${op.op} ${op.path || "/"}${"value" in op ? " " + JSON.stringify(op.value) : ""}`;

  // The names of the objects of one template in a drift report, as `templates/from-edge` takes them.
  function objectsOf(report, templateId) {
    const objects = { streams: [], tables: [], rules: [], nodes: [] };
    const add = (list, name) => { if (!objects[list].includes(name)) objects[list].push(name); };
    report.objects.filter((o) => o.template_id === templateId).forEach(({ ref }) => {
      if (ref.kind === "stream") add("streams", ref.name);
      else if (ref.kind === "table") add("tables", ref.name);
      else if (ref.kind === "rule") add("rules", ref.id);
      else if (ref.kind === "node") add("nodes", ref.name);
      else if (ref.node) add("nodes", ref.node);
      else if (ref.driver) add("nodes", ref.driver);
    });
    return objects;
  }

  async function openDrift(edge, changed) {
    const project = await api("GET", P(""));
    const admin = project.role === "admin";
    let report = await api("GET", P(`/edge-services/${edge.id}/drift`));
    const templates = await api("GET", P("/templates?limit=1000"));
    const templateName = (id) => templates.items.find((x) => x.id === id)?.name || id || "";
    const d = dialog(`<header><h2>${esc(t("drift.title"))}: ${esc(edge.name)}</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
      <div id="drift-body"></div>`, changed);
    const render = () => {
      const drifted = report.objects.filter((o) => o.drifted);
      const sources = [...new Set(drifted.map((o) => o.template_id).filter(Boolean))];
      $("#drift-body", d.el).innerHTML = `<p role="status"><span class="badge ${esc(report.state)}" id="drift-state" data-state="${esc(report.state)}">${esc(t("drift." + report.state))}</span>
        ${report.checked_at ? esc(t("drift.checked_at", { at: when(report.checked_at) })) : esc(t("drift.never_checked"))}${report.reason ? ` <span class="muted">${esc(report.reason)}</span>` : ""}</p>
        ${admin ? `<div class="row"><button type="button" class="secondary" id="drift-check">${esc(t("drift.check"))}</button>
          ${report.objects.length ? `<button type="button" id="drift-reapply">${esc(t("drift.reapply"))}</button>` : ""}
          ${sources.map((id) => `<button type="button" class="secondary" data-adopt="${esc(id)}">${esc(t("drift.adopt", { name: templateName(id) }))}</button>`).join("")}</div>` : ""}
        ${report.objects.length ? `<table id="drift-objects"><thead><tr><th>${esc(t("drift.object"))}</th><th>${esc(t("common.status"))}</th><th>${esc(t("drift.template"))}</th><th>${esc(t("drift.diff"))}</th></tr></thead>
          <tbody>${report.objects.map((o) => `<tr data-drifted="${o.drifted}"><td>${esc(o.object)}</td>
            <td>${o.drifted ? marker("failed") + " " + esc(t("drift.drifted")) : o.checked ? marker("succeeded") + " " + esc(t("drift.in_sync")) : `<span class="muted">${esc(t("drift.not_checked"))}</span>`}</td>
            <td>${esc(templateName(o.template_id) || o.plugin_id || "")}</td>
            <td>${o.diff.length ? `<pre class="diff">${o.diff.map((op) => esc(patchLine(op))).join("\n")}</pre>` : ""}</td></tr>`).join("")}</tbody></table>`
          : `<p class="muted">${esc(t("drift.nothing_delivered"))}</p>`}`;
      $("#drift-check", d.el)?.addEventListener("click", async () => {
        try { report = await api("POST", P(`/edge-services/${edge.id}/check`)); render(); } catch (error) { showError(d.el, error); }
      });
      $("#drift-reapply", d.el)?.addEventListener("click", async () => {
        if (!confirm(t("drift.reapply_confirm", { name: edge.name }))) return;
        try { const started = await api("POST", P(`/edge-services/${edge.id}/reapply`), {}); d.close(); openResult(started); } catch (error) { showError(d.el, error); }
      });
      $$("[data-adopt]", d.el).forEach((b) => b.addEventListener("click", async () => {
        const id = b.dataset.adopt;
        if (!confirm(t("drift.adopt_confirm", { name: templateName(id) }))) return;
        try {
          const saved = await api("POST", P("/templates/from-edge"), { edge_id: edge.id, template_id: id, objects: objectsOf(report, id) });
          $("#drift-body", d.el).insertAdjacentHTML("afterbegin", `<p class="notice" role="status" id="adopted">${esc(t("drift.adopted", { name: saved.name, v: saved.current_version }))}</p>`);
        } catch (error) { showError(d.el, error); }
      }));
    };
    render();
  }

  // Which objects the project's edges held at their last check.
  async function renderInventory(main, filters = {}, offset = 0) {
    const params = new URLSearchParams({ limit: 50, offset });
    Object.entries(filters).forEach(([k, v]) => v && params.append(k, v));
    const data = await api("GET", P(`/inventory?${params}`));
    main.innerHTML = `<h1>${esc(t("nav.inventory"))}</h1><p class="muted">${esc(t("inv.note"))}</p>
      <form class="row" id="inventory-filters"><label>${esc(t("common.kind"))}<select name="kind"><option value="">${esc(t("common.all"))}</option>
        ${["rule", "stream", "table", "node", "plugin"].map((k) => `<option value="${k}" ${filters.kind === k ? "selected" : ""}>${esc(t("inv." + k))}</option>`).join("")}</select></label>
        <label>${esc(t("inv.exact_name"))}<input name="name" value="${esc(filters.name)}"></label><button type="submit">${esc(t("common.search"))}</button></form>
      <table id="inventory"><thead><tr><th>${esc(t("common.name"))}</th><th>${esc(t("common.kind"))}</th><th>${esc(t("inv.edges"))}</th><th></th></tr></thead>
      <tbody>${data.items.map((x) => `<tr data-name="${esc(x.name)}" data-kind="${esc(x.kind)}"><td>${esc(x.name)}</td><td>${esc(t("inv." + x.kind))}</td><td>${x.edges}</td>
        <td><button type="button" class="link" data-show>${esc(t("inv.show_edges"))}</button></td></tr>`).join("")}</tbody></table>`;
    main.append(pager(data.total, offset, 50, (o) => renderInventory(main, filters, o)));
    $("#inventory-filters", main).addEventListener("submit", (e) => { e.preventDefault(); renderInventory(main, Object.fromEntries(new FormData(e.target))); });
    $$("[data-show]", main).forEach((b) => b.addEventListener("click", async () => {
      const item = data.items.find((x) => x.name === b.closest("tr").dataset.name && x.kind === b.closest("tr").dataset.kind);
      const names = [];
      for (const id of item.edge_ids) names.push((await api("GET", P(`/edge-services/${id}`)).catch(() => ({ name: id }))).name);
      dialog(`<header><h2>${esc(t("inv." + item.kind))} ${esc(item.name)}</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
        <p>${esc(t("inv.held_by", { n: item.edges }))}</p><ul id="inventory-edges">${names.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`);
    }));
  }

  // ----- configuration templates and plugins -----

  async function renderConfig(main, tab = "templates") {
    main.innerHTML = `<h1>${esc(t("config.title"))}</h1>
      <div class="tabs" role="tablist"><button type="button" role="tab" data-tab="templates" aria-selected="${tab === "templates"}">${esc(t("config.templates"))}</button>
      <button type="button" role="tab" data-tab="plugins" aria-selected="${tab === "plugins"}">${esc(t("config.plugins"))}</button></div><div id="tab"></div>`;
    $$("[data-tab]", main).forEach((b) => b.addEventListener("click", () => renderConfig(main, b.dataset.tab)));
    if (state.deliverTo?.size) {
      const note = document.createElement("p");
      note.className = "notice";
      note.id = "deliver-to-note";
      note.setAttribute("role", "status");
      note.innerHTML = `${esc(t("edges.deliver_to_note", { n: state.deliverTo.size }))} <button type="button" class="link">${esc(t("common.cancel"))}</button>`;
      $("button", note).addEventListener("click", () => { state.deliverTo = null; note.remove(); });
      $(".tabs", main).before(note);
    }
    await (tab === "templates" ? renderTemplates($("#tab", main)) : renderPlugins($("#tab", main)));
  }

  async function renderTemplates(box) {
    const data = await api("GET", P("/templates?limit=1000"));
    box.innerHTML = `<details id="new-template"><summary><button type="button" class="secondary" id="new-template-button">${esc(t("tpl.new"))}</button></summary>
      <form id="template-form">
        <div class="row"><label>${esc(t("common.name"))}<input name="name" required></label>
        <label>${esc(t("common.kind"))}<select name="kind"><option value="rule">${esc(t("tpl.rule"))}</option><option value="driver">${esc(t("tpl.driver"))}</option></select></label>
        <label>${esc(t("common.description"))}<input name="description"></label>
        <label>${esc(t("tpl.upload_file"))}<input type="file" name="file" accept=".json"></label></div>
        <label>${esc(t("tpl.content"))}<textarea name="content" required></textarea></label>
        <div class="row"><button type="submit">${esc(t("common.save"))}</button></div></form></details>
      <details id="from-edge"><summary><button type="button" class="secondary" id="from-edge-button">${esc(t("tpl.from_edge"))}</button></summary>
      <form id="from-edge-form"><p class="muted">${esc(t("tpl.from_edge_note"))}</p>
        <div class="row"><label>${esc(t("common.name"))}<input name="name" required></label>
        <label>${esc(t("tpl.from_edge_gateway"))}<input name="edge" list="from-edge-edges" required></label><datalist id="from-edge-edges"></datalist></div>
        <div class="row"><label>${esc(t("tpl.streams"))}<input name="streams" placeholder="s1, s2"></label><label>${esc(t("tpl.tables"))}<input name="tables"></label>
        <label>${esc(t("tpl.rules"))}<input name="rules"></label><label>${esc(t("tpl.nodes"))}<input name="nodes"></label></div>
        <div class="row"><button type="submit">${esc(t("tpl.from_edge_create"))}</button></div></form></details>
      <table><thead><tr><th>${esc(t("common.name"))}</th><th>${esc(t("common.kind"))}</th><th>${esc(t("tpl.version"))}</th><th>${esc(t("common.description"))}</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${data.items.map((tpl) => `<tr data-id="${esc(tpl.id)}"><td>${esc(tpl.name)}</td><td>${esc(t(tpl.kind === "rule" ? "tpl.rule" : "tpl.driver"))}</td><td>v${tpl.current_version}</td><td>${esc(tpl.description)}</td>
        <td><button type="button" class="link" data-act="deliver">${esc(t("tpl.deliver"))}</button> · <button type="button" class="link" data-act="edit">${esc(t("tpl.edit"))}</button> ·
        <button type="button" class="link" data-act="versions">${esc(t("tpl.versions"))}</button> · <button type="button" class="link" data-act="export">${esc(t("tpl.export"))}</button> ·
        <button type="button" class="link" data-act="delete">${esc(t("common.delete"))}</button></td></tr>`).join("")}</tbody></table>`;
    $("#new-template-button", box).addEventListener("click", () => { const d = $("#new-template", box); d.open = !d.open; });
    $("#from-edge-button", box).addEventListener("click", async () => {
      const d = $("#from-edge", box);
      d.open = !d.open;
      const edges = await api("GET", P("/edge-services?limit=200")).catch(() => ({ items: [] }));
      $("#from-edge-edges", box).innerHTML = edges.items.map((e) => `<option value="${esc(e.name)}">`).join("");
      d.edges = edges.items;
    });
    $("#from-edge-form", box).addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target;
      const names = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);
      const edge = ($("#from-edge", box).edges || []).find((x) => x.name === f.edge.value);
      try {
        if (!edge) throw Object.assign(new Error(t("tpl.from_edge_unknown", { name: f.edge.value })), { details: { field: "edge" } });
        await api("POST", P("/templates/from-edge"), { edge_id: edge.id, name: f.name.value,
          objects: { streams: names(f.streams.value), tables: names(f.tables.value), rules: names(f.rules.value), nodes: names(f.nodes.value) } });
        renderTemplates(box);
      } catch (error) { showError(f, error); }
    });
    const form = $("#template-form", box);
    $('[name="file"]', form).addEventListener("change", async (e) => { const f = e.target.files[0]; if (f) { form.content.value = await f.text(); if (!form.name.value) form.name.value = f.name.replace(/\.json$/, ""); } });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("POST", P("/templates"), { name: form.name.value, kind: form.kind.value, description: form.description.value, content: form.content.value });
        renderTemplates(box);
      } catch (error) { showError(form, error); }
    });
    $$("[data-act]", box).forEach((button) => button.addEventListener("click", async () => {
      const id = button.closest("tr").dataset.id;
      const template = data.items.find((x) => x.id === id);
      try {
        if (button.dataset.act === "deliver") return openWizard({ template: await api("GET", P(`/templates/${id}`)) });
        if (button.dataset.act === "edit") return editTemplate(box, id);
        if (button.dataset.act === "versions") return showVersions(id, template.name, box);
        if (button.dataset.act === "export") {
          const response = await fetch(P(`/templates/${id}/export`), { credentials: "same-origin" });
          return download(`${template.name}-v${template.current_version}.json`, await response.text());
        }
        if (button.dataset.act === "delete" && confirm(t("common.confirm_delete", { name: template.name }))) { await api("DELETE", P(`/templates/${id}`)); renderTemplates(box); }
      } catch (error) { showError(box, error); }
    }));
  }

  async function editTemplate(box, id) {
    const template = await api("GET", P(`/templates/${id}`));
    const original = JSON.stringify(template.content, null, 2);
    let form;
    const edited = () => form && (form.content.value !== original || form.description.value !== template.description);
    const d = dialog(`<header><h2>${esc(t("tpl.edit"))}: ${esc(template.name)} (v${template.current_version})</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
      <form id="template-editor"><label>${esc(t("common.description"))}<input name="description" value="${esc(template.description)}"></label>
      <label>${esc(t("tpl.content"))}<textarea name="content">${esc(original)}</textarea></label>
      <div class="row"><button type="submit">${esc(t("common.save"))}</button></div></form>`, undefined, edited);
    form = $("form", d.el);
    $("form", d.el).addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const saved = await api("PUT", P(`/templates/${id}`), { description: e.target.description.value, content: e.target.content.value });
        d.close();
        await renderTemplates(box);
        box.insertAdjacentHTML("afterbegin", `<p class="notice" role="status">${esc(t("tpl.saved", { v: saved.current_version }))}</p>`);
      } catch (error) { showError(e.target, error); }
    });
  }

  // Every version of a template: view one, compare two, restore one as the newest, deliver one.
  async function showVersions(id, name, box) {
    const [versions, project] = await Promise.all([api("GET", P(`/templates/${id}/versions`)), api("GET", P(""))]);
    const admin = project.role === "admin";
    const pick = (field, chosen) => `<select name="${field}" aria-label="${esc(t("tpl.version"))}">${versions.items.map((v) => `<option value="${v.version}" ${v.version === chosen ? "selected" : ""}>v${v.version}</option>`).join("")}</select>`;
    const newest = versions.items[0]?.version;
    const d = dialog(`<header><h2>${esc(t("tpl.versions"))}: ${esc(name)}</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
      <table id="version-rows"><thead><tr><th>${esc(t("tpl.version"))}</th><th>${esc(t("common.created"))}</th><th>${esc(t("hist.by"))}</th><th>SHA-256</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${versions.items.map((v) => `<tr data-version="${v.version}"><td>v${v.version}</td><td>${esc(when(v.created_at))}</td><td>${esc(v.created_by)}</td><td class="muted">${esc(v.content_sha256.slice(0, 16))}</td>
        <td class="actions"><button type="button" class="link" data-v="view">${esc(t("tpl.view"))}</button>
        ${admin ? `<button type="button" class="link" data-v="deliver">${esc(t("tpl.deliver"))}</button>${v.version === newest ? "" : `<button type="button" class="link" data-v="restore">${esc(t("tpl.restore"))}</button>`}` : ""}</td></tr>`).join("")}</tbody></table>
      ${versions.items.length > 1 ? `<form class="row" id="compare">${pick("from", versions.items[1].version)} → ${pick("to", newest)}<button type="submit" class="secondary">${esc(t("tpl.compare"))}</button></form>` : ""}
      <div id="version-view"></div>`);
    const view = $("#version-view", d.el);
    const load = (v) => api("GET", P(`/templates/${id}/versions/${v}`));
    const pretty = (body) => JSON.stringify(body.content, null, 2);
    $$("[data-v]", d.el).forEach((b) => b.addEventListener("click", async () => {
      const v = Number(b.closest("tr").dataset.version);
      try {
        const body = await load(v);
        if (b.dataset.v === "view") {
          view.innerHTML = `<h3>v${v}</h3><pre class="content" id="version-content"></pre>`;
          $("#version-content", view).textContent = pretty(body);
        } else if (b.dataset.v === "deliver") {
          d.close();
          openWizard({ template: { ...body, current_version: v } });
        } else if (confirm(t("tpl.restore_confirm", { v, n: newest + 1 }))) {
          const saved = await api("PUT", P(`/templates/${id}`), { content: body.content });
          d.close();
          if (box) await renderTemplates(box);
          (box || $("#main")).insertAdjacentHTML("afterbegin", `<p class="notice" role="status">${esc(t("tpl.restored", { v, n: saved.current_version }))}</p>`);
        }
      } catch (error) { showError(view, error); }
    }));
    $("#compare", d.el)?.addEventListener("submit", async (e) => {
      e.preventDefault();
      const [from, to] = [Number(e.target.from.value), Number(e.target.to.value)];
      try {
        const [a, b] = await Promise.all([load(from), load(to)]);
        const lines = lineDiff(pretty(a).split("\n"), pretty(b).split("\n"));
        view.innerHTML = `<h3>${esc(t("tpl.diff_title", { from, to }))}</h3>`;
        if (!lines) { view.insertAdjacentHTML("beforeend", `<p class="muted">${esc(t("tpl.diff_too_large"))}</p>`); return; }
        if (!lines.some(([mark]) => mark !== " ")) { view.insertAdjacentHTML("beforeend", `<p class="muted" id="version-same">${esc(t("tpl.diff_same"))}</p>`); return; }
        view.insertAdjacentHTML("beforeend", `<pre class="diff" id="version-diff">${lines.map(([mark, text]) => `<span class="${mark === "+" ? "added" : mark === "-" ? "removed" : ""}">${esc(mark + " " + text)}</span>`).join("\n")}</pre>`);
      } catch (error) { showError(view, error); }
    });
  }

  // A line diff (longest common subsequence) as [mark, line] pairs: "-" only in `a`, "+" only in
  // `b`, " " in both. `null` when the two are too long to compare in the browser.
  function lineDiff(a, b) {
    if (a.length * b.length > 4000000) return null;
    const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
    for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    while (i < a.length || j < b.length) {
      if (i < a.length && j < b.length && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
      else if (i < a.length && (j === b.length || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["-", a[i]]); i++; }
      else { out.push(["+", b[j]]); j++; }
    }
    return out;
  }

  async function renderPlugins(box) {
    const data = await api("GET", P("/plugins?limit=1000"));
    box.innerHTML = `<form id="plugin-form"><h2>${esc(t("plg.new"))}</h2><div class="row">
      <label>${esc(t("plg.name"))}<input name="name" required pattern="[A-Za-z][A-Za-z0-9_]*"></label>
      <label>${esc(t("common.description"))}<input name="description"></label>
      <label>${esc(t("plg.file"))}<input type="file" name="file" accept=".zip" required></label>
      <button type="submit">${esc(t("plg.upload"))}</button> <progress value="0" max="100" hidden></progress></div></form>
      <table><thead><tr><th>${esc(t("common.name"))}</th><th>${esc(t("plg.language"))}</th><th>${esc(t("common.version"))}</th><th>SHA-256</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${data.items.map((p) => `<tr data-id="${esc(p.id)}"><td>${esc(p.name)}</td><td>${esc(p.manifest.language)}</td><td>${esc(p.manifest.version)}</td><td class="muted">${esc(p.sha256.slice(0, 16))}</td>
        <td><button type="button" class="link" data-act="deliver">${esc(t("plg.deliver"))}</button> · <button type="button" class="link" data-act="delete">${esc(t("common.delete"))}</button></td></tr>`).join("")}</tbody></table>`;
    const form = $("#plugin-form", box);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = new FormData(form);
      const progress = $("progress", form);
      progress.hidden = false;
      const request = new XMLHttpRequest();
      request.open("POST", P("/plugins"));
      request.setRequestHeader("x-edgefleet-csrf", "1");
      request.upload.onprogress = (p) => { if (p.lengthComputable) progress.value = (100 * p.loaded) / p.total; };
      request.onload = () => {
        progress.hidden = true;
        let data = {};
        try { data = JSON.parse(request.responseText); } catch { /* not JSON */ }
        if (request.status >= 200 && request.status < 300) return renderPlugins(box).then(() => box.insertAdjacentHTML("afterbegin", `<p class="notice" role="status">${esc(t("plg.uploaded", { name: data.name }))}</p>`));
        showError(form, answerError(request.status, data, request.statusText));
      };
      request.send(body);
    });
    $$("[data-act]", box).forEach((button) => button.addEventListener("click", async () => {
      const plugin = data.items.find((x) => x.id === button.closest("tr").dataset.id);
      try {
        if (button.dataset.act === "deliver") return openWizard({ plugin });
        if (confirm(t("common.confirm_delete", { name: plugin.name }))) { await api("DELETE", P(`/plugins/${plugin.id}`)); renderPlugins(box); }
      } catch (error) { showError(box, error); }
    }));
  }

  // ----- the delivery wizard -----

  function openWizard({ template, plugin }) {
    const name = template ? template.name : plugin.name;
    // Parameters come after targets (their values are per target) and the step is left out when
    // the content, as edited, has none.
    const stepsNow = () => (template ? ["wiz.step1", "wiz.step3", ...(parametersNow().length ? ["wiz.step2"] : []), "wiz.step4"] : ["wiz.step3", "wiz.step4"]);
    const parametersNow = () => parametersOf(template, wizard.content);
    const wizard = { step: 0, content: template ? JSON.stringify(template.content, null, 2) : "", defaults: {}, perTarget: {}, selected: new Map(state.deliverTo || []), excluded: new Map(), filter: {}, allMatching: false, total: 0, options: { timeout_secs: 60, concurrency: 64, on_conflict: "overwrite" }, rollout: { kind: "none", waves: "1%,10%,rest", gate: "auto", abortPercent: "", abortMin: 20, onAbort: "stop", startAt: "" } };
    const d = dialog(`<header><h2>${esc(t("wiz.title", { name }))}</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
      <div class="steps"></div><div id="wizard-body"></div>
      <div class="row"><button type="button" class="secondary" id="wiz-back">${esc(t("common.back"))}</button><button type="button" id="wiz-next">${esc(t("common.next"))}</button></div>`, undefined, () => {
      const area = $('#wizard-body textarea[name="content"]', d.el);
      return !!template && (area ? area.value : wizard.content).trim() !== JSON.stringify(template.content, null, 2).trim();
    });
    const body = $("#wizard-body", d.el);
    let steps = stepsNow();
    const show = async () => {
      steps = stepsNow();
      $(".steps", d.el).innerHTML = steps.map((s, i) => `<span class="${i === wizard.step ? "current" : ""}">${i + 1}. ${esc(t(s))}</span>`).join("");
      $("#wiz-back", d.el).disabled = wizard.step === 0;
      $("#wiz-next", d.el).textContent = wizard.step === steps.length - 1 ? t("wiz.execute") : t("common.next");
      const step = steps[wizard.step];
      if (step === "wiz.step1") {
        body.innerHTML = `<p class="notice">${esc(t("wiz.content_note"))}</p><textarea name="content" aria-label="${esc(t("tpl.content"))}">${esc(wizard.content)}</textarea>`;
      } else if (step === "wiz.step2") {
        showParameters(body, wizard, parametersNow());
      } else if (step === "wiz.step3") {
        await showTargets(body, wizard);
      } else {
        const count = wizard.allMatching ? howMany(wizard.total - wizard.excluded.size, wizard.totalEstimated) : wizard.selected.size;
        body.innerHTML = `<p>${esc(t("wiz.summary", { n: count }))}</p><div id="target-warnings"></div><div class="row">
          <label>${esc(t("wiz.timeout"))}<input name="timeout_secs" type="number" min="1" value="${wizard.options.timeout_secs}"></label>
          <label>${esc(t("wiz.concurrency"))}<input name="concurrency" type="number" min="1" value="${wizard.options.concurrency}"></label>
          <label>${esc(t("wiz.on_conflict"))}<select name="on_conflict">${["overwrite", "skip", "fail"].map((o) => `<option value="${o}" ${wizard.options.on_conflict === o ? "selected" : ""}>${esc(t("wiz." + o))}</option>`).join("")}</select></label>
          <label>${esc(t("wiz.on_failure"))}<select name="on_failure">${["restore", "leave"].map((o) => `<option value="${o}" ${(wizard.options.on_failure || "restore") === o ? "selected" : ""}>${esc(t("wiz." + o))}</option>`).join("")}</select></label></div>
          <fieldset id="rollout"><legend>${esc(t("roll.title"))}</legend><div class="row">
          <label>${esc(t("roll.waves"))}<select name="rollout">${["none", "canary", "custom"].map((o) => `<option value="${o}" ${wizard.rollout.kind === o ? "selected" : ""}>${esc(t("roll." + o))}</option>`).join("")}</select></label>
          <label>${esc(t("roll.custom"))}<input name="waves" placeholder="1%,10%,rest" value="${esc(wizard.rollout.waves)}"></label>
          <label>${esc(t("roll.gate"))}<select name="gate">${["auto", "manual"].map((o) => `<option value="${o}" ${wizard.rollout.gate === o ? "selected" : ""}>${esc(t("roll.gate_" + o))}</option>`).join("")}</select></label>
          <label>${esc(t("roll.abort_percent"))}<input name="abort_percent" type="number" min="0" max="100" step="0.1" value="${esc(wizard.rollout.abortPercent)}"></label>
          <label>${esc(t("roll.abort_min"))}<input name="abort_min" type="number" min="1" value="${esc(wizard.rollout.abortMin)}"></label>
          <label>${esc(t("roll.on_abort"))}<select name="on_abort">${["stop", "rollback"].map((o) => `<option value="${o}" ${wizard.rollout.onAbort === o ? "selected" : ""}>${esc(t("roll.on_abort_" + o))}</option>`).join("")}</select></label>
          <label>${esc(t("roll.start_at"))}<input name="start_at" type="datetime-local" value="${esc(wizard.rollout.startAt)}"></label></div></fieldset>
          <div class="row"><button type="button" class="secondary" id="wiz-plan">${esc(t("plan.preview"))}</button>
          <label style="flex-direction:row;gap:6px;align-items:center"><input type="checkbox" name="dry_run" ${wizard.dryRun ? "checked" : ""}> ${esc(t("wiz.dry_run"))}</label></div><div id="plan-view"></div>`;
        $("#wiz-plan", body).addEventListener("click", () => { collect(); previewPlan(); });
        if (wizard.plan) showPlan($("#plan-view", body), wizard.plan);
        warnOfTargets($("#target-warnings", body), wizard, template ? parametersNow() : []).catch(() => {});
      }
    };
    const collect = () => {
      const step = steps[wizard.step];
      if (step === "wiz.step1") wizard.content = $('[name="content"]', body).value;
      if (step === "wiz.step4") {
        wizard.options = { timeout_secs: Number($('[name="timeout_secs"]', body).value), concurrency: Number($('[name="concurrency"]', body).value), on_conflict: $('[name="on_conflict"]', body).value, on_failure: $('[name="on_failure"]', body).value };
        wizard.dryRun = $('[name="dry_run"]', body).checked;
        const value = (n) => $(`[name="${n}"]`, body).value;
        wizard.rollout = { kind: value("rollout"), waves: value("waves"), gate: value("gate"), abortPercent: value("abort_percent"), abortMin: value("abort_min"), onAbort: value("on_abort"), startAt: value("start_at") };
      }
      // Anything changed before the last step makes an earlier plan stale.
      if (step !== "wiz.step4") wizard.plan = null;
    };
    // The delivery the wizard would start, as a request (a plan is the same with mode "plan").
    const buildRequest = () => {
      // An empty filter is refused by the API (a typo must not reach the whole fleet): all matching
      // with no filter says so explicitly.
      const filterGiven = Object.values(wizard.filter || {}).some((v) => (Array.isArray(v) ? v.length > 0 : v !== undefined && v !== ""));
      const targets = wizard.allMatching ? (filterGiven ? { filter: wizard.filter } : { all: true }) : { ids: [...wizard.selected.keys()] };
      if (wizard.allMatching && wizard.excluded.size) targets.exclude = [...wizard.excluded.keys()];
      const request = { targets, options: wizard.options };
      if (template) {
        Object.assign(request, { template_id: template.id, version: template.current_version, params: paramsRequest(wizard, parametersNow()) });
        if (wizard.content.trim() !== JSON.stringify(template.content, null, 2).trim()) request.content = wizard.content;
      } else {
        request.plugin_id = plugin.id;
      }
      return request;
    };
    // Waves, gate, abort rule and start time as the API takes them (none when nothing is chosen).
    const rolloutPart = () => {
      const r = wizard.rollout;
      const part = {};
      if (r.startAt) part.start_at = new Date(r.startAt).toISOString();
      if (r.kind === "none") return part;
      const text = r.kind === "canary" ? "1%,10%,rest" : r.waves;
      const waves = text.split(",").map((w) => w.trim()).filter(Boolean).map((w) => (w === "rest" || w === "all" ? { percent: 100 } : w.endsWith("%") ? { percent: Number(w.slice(0, -1)) } : { count: Number(w) }));
      part.rollout = { waves, gate: r.gate, on_abort: r.onAbort };
      if (r.abortPercent !== "") part.rollout.abort = { failed_percent: Number(r.abortPercent), min_results: Number(r.abortMin) || 1 };
      return part;
    };
    // Starts a plan, waits for it to end, and shows it grouped; Execute then carries it out.
    const previewPlan = async () => {
      const view = $("#plan-view", body);
      view.innerHTML = `<p role="status">${esc(t("plan.reading"))}</p>`;
      try {
        const started = await api("POST", P("/deliveries"), { ...buildRequest(), mode: "plan" });
        // The plan ends when its stream says so; the page stops waiting after PLAN_WAIT_MS and says so
        // (the plan goes on, and stays in the history).
        await new Promise((resolve, reject) => {
          const stream = new EventSource(P(`/deliveries/${started.id}/events`));
          const deadline = setTimeout(() => { stream.close(); reject(new Error(t("plan.too_slow"))); }, PLAN_WAIT_MS);
          const done = () => { clearTimeout(deadline); stream.close(); resolve(); };
          stream.addEventListener("final", done);
          stream.onerror = () => { if (stream.readyState === EventSource.CLOSED) done(); };
        });
        wizard.plan = await api("GET", P(`/deliveries/${started.id}/plan`));
        showPlan(view, wizard.plan);
      } catch (error) { showError(view, error); }
    };
    $("#wiz-back", d.el).addEventListener("click", () => { collect(); wizard.step -= 1; show(); });
    $("#wiz-next", d.el).addEventListener("click", async () => {
      collect();
      if (wizard.step < steps.length - 1) { wizard.step += 1; return show(); }
      try {
        // With a plan on screen, Execute carries that plan out (gateways changed since are not written).
        // A plan on screen is carried out with the chosen waves and start time.
        const staged = rolloutPart();
        const delivery = wizard.plan && !wizard.dryRun
          ? await api("POST", P(`/deliveries/${wizard.plan.delivery_id}/apply`), { options: wizard.options, ...staged })
          : await api("POST", P("/deliveries"), { ...buildRequest(), ...staged, dry_run: !!wizard.dryRun });
        d.close();
        // The edge services chosen on their page have their delivery now.
        if (state.deliverTo) { state.deliverTo = null; edgeChoice.clear(); }
        openResult(delivery);
      } catch (error) { showError(body, error); }
    });
    show();
  }

  const PLAN_WAIT_MS = 10 * 60 * 1000;

  // ----- parameters: defaults and a table of values per target -----

  // `${name}` and `${secret:name}` in content, not `$${...}` (a literal eKuiper placeholder) and not
  // the `edge.` values every target has.
  const PLACEHOLDER = /(\$?)\$\{(secret:)?([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\}/g;
  function parametersOf(template, content) {
    const names = new Map((template?.parameters || []).map((p) => [p, (template.secret_parameters || []).includes(p)]));
    for (const [, escaped, secret, name] of String(content).matchAll(PLACEHOLDER)) {
      if (!escaped) names.set(name, names.get(name) || !!secret);
    }
    return [...names].filter(([name]) => !name.startsWith("edge.")).map(([name, secret]) => ({ name, secret }));
  }

  // A value as typed: numbers that read back the same become numbers ("502" → 502; "0123" and
  // "1.10" stay text), so `"port": "${port}"` sends a number.
  const typedValue = (v) => (v.trim() !== "" && String(Number(v)) === v ? Number(v) : v);

  // The rows of the table: the chosen targets (id → name), or with "all matching" the targets
  // that have values (keyed by name or id, as imported).
  const PARAM_ROWS = 500;
  function parameterRows(wizard) {
    if (!wizard.allMatching) return [...wizard.selected].map(([id, name]) => ({ key: id, name: typeof name === "string" ? name : id }));
    return Object.keys(wizard.perTarget).filter((key) => stillChosen(wizard, key)).map((key) => ({ key, name: key }));
  }

  // Whether values kept under `key` (an id, or with "all matching" a name too) belong to a target
  // still chosen: values typed or imported before a target was unticked are not sent.
  function stillChosen(wizard, key) {
    if (!wizard.allMatching) return wizard.selected.has(key);
    return !wizard.excluded.has(key) && ![...wizard.excluded.values()].includes(key);
  }

  // Targets with a parameter that has neither its own value nor a default: [{name, parameters}].
  function missingValues(wizard, parameters) {
    const out = [];
    for (const row of parameterRows(wizard)) {
      const own = wizard.perTarget[row.key] || {};
      const names = parameters.map((p) => p.name).filter((p) => (own[p] ?? "") === "" && (wizard.defaults[p] ?? "") === "");
      if (names.length) out.push({ name: row.name, parameters: names });
    }
    // With "all matching", targets without a row of their own take the defaults.
    const noDefault = parameters.map((p) => p.name).filter((p) => (wizard.defaults[p] ?? "") === "");
    if (wizard.allMatching && noDefault.length) out.push({ name: t("par.other_targets"), parameters: noDefault });
    return out;
  }

  // What the API takes: defaults, and per target only the values given.
  function paramsRequest(wizard, parameters) {
    const known = new Set(parameters.map((p) => p.name));
    const given = (values) => Object.fromEntries(Object.entries(values || {}).filter(([k, v]) => known.has(k) && v !== "").map(([k, v]) => [k, typedValue(v)]));
    const targets = Object.fromEntries(Object.entries(wizard.perTarget).filter(([key]) => stillChosen(wizard, key)).map(([key, values]) => [key, given(values)]).filter(([, values]) => Object.keys(values).length));
    return { defaults: given(wizard.defaults), targets };
  }

  // CSV (RFC 4180: quoted fields, doubled quotes, line breaks inside quotes) or, when the first line
  // has a tab (or `separator` says so), tab-separated text as a spreadsheet copies it.
  function parseTable(text, separator = text.split(/\r?\n/, 1)[0].includes("\t") ? "\t" : ",") {
    const rows = [];
    let row = [], field = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === separator) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows.filter((r) => r.some((f) => f.trim() !== ""));
  }

  // An imported table: a header `target,<parameter>...` and a row per target (its name or id).
  // Every problem is listed; rows without one are taken.
  function importValues(wizard, parameters, text) {
    const rows = parseTable(text);
    const problems = [];
    if (!rows.length) return { problems: [t("par.empty_file")], taken: 0 };
    const [header, ...data] = rows;
    const known = new Set(parameters.map((p) => p.name));
    const columns = header.slice(1).map((h) => h.trim());
    columns.forEach((c, i) => { if (!known.has(c)) problems.push(t("par.unknown_column", { column: c || `#${i + 2}`, known: [...known].join(", ") })); });
    // Names and ids of the ticked targets (or, with "all matching", of those unticked).
    const byNameOrId = (targets) => { const m = new Map(); for (const [id, name] of targets) { m.set(id, id); if (typeof name === "string") m.set(name, id); } return m; };
    const chosen = byNameOrId(wizard.selected);
    const left = byNameOrId(wizard.excluded);
    const seen = new Set();
    let taken = 0;
    data.forEach((fields, i) => {
      const line = i + 2;
      const target = (fields[0] || "").trim();
      if (!target) return problems.push(t("par.no_target", { line }));
      if (wizard.allMatching && left.has(target)) return problems.push(t("par.excluded", { line, target }));
      const key = wizard.allMatching ? target : chosen.get(target);
      if (!key) return problems.push(t("par.not_chosen", { line, target }));
      if (seen.has(key)) return problems.push(t("par.twice", { line, target }));
      seen.add(key);
      const values = (wizard.perTarget[key] ||= {});
      columns.forEach((c, j) => { if (known.has(c)) values[c] = (fields[j + 1] ?? "").trim(); });
      taken += 1;
    });
    return { problems, taken };
  }

  function showParameters(body, wizard, parameters) {
    const rows = parameterRows(wizard);
    const shown = rows.slice(0, PARAM_ROWS);
    const input = (p, attrs, value, placeholder) => `<input ${attrs} type="${p.secret ? "password" : "text"}" autocomplete="off" value="${esc(value ?? "")}" placeholder="${esc(placeholder ?? "")}" aria-label="${esc(p.name)}">`;
    body.innerHTML = `<h3>${esc(t("wiz.defaults"))}</h3><div class="row">${parameters.map((p) => `<label>${esc(p.name)}${p.secret ? ` <span class="tag">${esc(t("par.secret"))}</span>` : ""}${input(p, `data-default="${esc(p.name)}"`, wizard.defaults[p.name])}</label>`).join("")}</div>
      <h3>${esc(t("par.per_target"))}</h3><p class="muted">${esc(t(wizard.allMatching ? "par.note_all" : "par.note"))}</p>
      <div class="row"><label class="secondary">${esc(t("par.import"))}<input type="file" id="param-file" accept=".csv,.tsv,.txt,text/csv"></label>
      <a class="link" id="param-sample" download="parameters.csv" href="#">${esc(t("par.sample"))}</a></div>
      <div id="param-problems"></div><p role="status" id="param-missing"></p>
      ${shown.length ? `<div class="scroll"><table id="param-table"><thead><tr><th>${esc(t("wiz.step3"))}</th>${parameters.map((p) => `<th>${esc(p.name)}</th>`).join("")}</tr></thead>
      <tbody>${shown.map((r, ri) => `<tr data-key="${esc(r.key)}"><td>${esc(r.name)}</td>${parameters.map((p, ci) => `<td>${input(p, `data-row="${ri}" data-col="${ci}"`, wizard.perTarget[r.key]?.[p.name], wizard.defaults[p.name])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>` : ""}
      ${rows.length > shown.length ? `<p class="muted">${esc(t("par.more_rows", { n: rows.length - shown.length }))}</p>` : ""}`;
    const refresh = () => {
      $$("[data-row]", body).forEach((cell) => {
        const p = parameters[cell.dataset.col];
        cell.placeholder = wizard.defaults[p.name] ?? "";
        cell.classList.toggle("missing", cell.value === "" && (wizard.defaults[p.name] ?? "") === "");
      });
      const missing = missingValues(wizard, parameters);
      $("#param-missing", body).className = missing.length ? "warning" : "muted";
      $("#param-missing", body).textContent = missing.length ? t("par.missing", { n: missing.length, names: missing.slice(0, 5).map((m) => `${m.name} (${m.parameters.join(", ")})`).join("; ") }) : t("par.complete");
    };
    const setCell = (cell, value) => {
      cell.value = value;
      const key = cell.closest("tr").dataset.key;
      (wizard.perTarget[key] ||= {})[parameters[cell.dataset.col].name] = value;
    };
    $$("[data-default]", body).forEach((i) => i.addEventListener("input", () => { wizard.defaults[i.dataset.default] = i.value; refresh(); }));
    $$("[data-row]", body).forEach((cell) => {
      cell.addEventListener("input", () => { setCell(cell, cell.value); refresh(); });
      // Pasting a block copied from a spreadsheet fills cells from this one rightwards and down.
      cell.addEventListener("paste", (e) => {
        const text = e.clipboardData?.getData("text/plain") || "";
        if (!/[\t\n]/.test(text.trimEnd())) return;
        e.preventDefault();
        // A spreadsheet copies cells separated by tabs; a comma is part of a value.
        const block = parseTable(text, "\t");
        block.forEach((fields, dr) => fields.forEach((value, dc) => {
          const target = $(`[data-row="${Number(cell.dataset.row) + dr}"][data-col="${Number(cell.dataset.col) + dc}"]`, body);
          if (target) setCell(target, value.trim());
        }));
        refresh();
      });
    });
    $("#param-sample", body).addEventListener("click", (e) => {
      const quote = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
      const lines = [["target", ...parameters.map((p) => p.name)], ...rows.slice(0, PARAM_ROWS).map((r) => [r.name, ...parameters.map((p) => wizard.perTarget[r.key]?.[p.name] ?? "")])];
      e.currentTarget.href = `data:text/csv;charset=utf-8,${encodeURIComponent(lines.map((l) => l.map(quote).join(",")).join("\n") + "\n")}`;
    });
    $("#param-file", body).addEventListener("change", async (e) => {
      const file = e.target.files[0];
      if (!file) return;
      const result = importValues(wizard, parameters, await file.text());
      showParameters(body, wizard, parameters);
      $("#param-problems", body).innerHTML = `<p role="status" id="param-imported">${esc(t("par.imported", { n: result.taken }))}</p>
        ${result.problems.length ? `<ul class="error" id="param-import-problems">${result.problems.map((p) => `<li>${esc(p)}</li>`).join("")}</ul>` : ""}`;
    });
    refresh();
  }

  // A plan grouped by change set: totals, each group with its changes and patches, unread targets.
  function showPlan(view, plan) {
    const s = plan.summary;
    const change = (c) => `<li data-action="${esc(c.action)}"><span class="tag">${esc(t("plan." + c.action))}</span> ${esc(c.object)}${c.reason ? ` — ${esc(c.reason)}` : ""}
      ${c.diff && c.diff.length && c.action !== "create" ? `<pre class="diff">${c.diff.map((op) => esc(`${op.op} ${op.path}${"value" in op ? " " + JSON.stringify(op.value) : ""}`)).join("\n")}</pre>` : ""}</li>`;
    view.innerHTML = `<h3>${esc(t("plan.title"))}</h3><p role="status" id="plan-summary">${esc(t("plan.summary", s))}</p>
      ${plan.groups.map((g) => `<details class="plan-group" open><summary>${esc(t("plan.group", { n: g.targets }))}: ${esc(g.names.join(", "))}${g.targets > g.names.length ? " …" : ""}</summary><ul>${g.changes.map(change).join("")}</ul></details>`).join("")}
      ${plan.unreachable.map((u) => `<p class="error">${esc(t("plan.unreachable", { n: u.targets, reason: u.reason }))} (${esc(u.names.join(", "))}${u.targets > u.names.length ? " …" : ""})</p>`).join("")}
      <p class="notice">${esc(t("plan.note"))}</p>`;
  }

  // The oldest NeuronEX edgefleet delivers to (the server's version gate refuses older ones).
  const MIN_NEURONEX = [3, 0, 0];
  const olderThanMin = (version) => {
    const parts = String(version).split(".").map((x) => parseInt(x, 10));
    if (parts.some(isNaN)) return false;
    for (let i = 0; i < 3; i++) if ((parts[i] || 0) !== MIN_NEURONEX[i]) return (parts[i] || 0) < MIN_NEURONEX[i];
    return false;
  };
  const WARN_READ = 1000;

  // The wizard's target filter as the edge-service list's query (a tag list is one `tag` each).
  const targetQuery = (filter, page) => {
    const params = new URLSearchParams(page);
    Object.entries(filter).forEach(([k, v]) => (Array.isArray(v) ? v.forEach((x) => params.append(k, x)) : params.append(k, v)));
    return params;
  };

  // Before Execute: which chosen targets the prober last found offline, and which run a NeuronEX
  // the version gate will refuse. Reads at most WARN_READ services and says so when there are more.
  async function warnOfTargets(box, wizard, parameters) {
    const missing = missingValues(wizard, parameters);
    const missingLine = missing.length ? `<p class="warning" id="warn-missing">${esc(t("par.missing", { n: missing.length, names: missing.slice(0, 5).map((m) => `${m.name} (${m.parameters.join(", ")})`).join("; ") }))}</p>` : "";
    let edges, total;
    if (wizard.allMatching) {
      const data = await api("GET", P(`/edge-services?${targetQuery(wizard.filter, { limit: WARN_READ })}`));
      [edges, total] = [data.items.filter((e) => !wizard.excluded.has(e.id)), data.total - wizard.excluded.size];
    } else {
      const ids = [...wizard.selected.keys()];
      total = ids.length;
      edges = (await Promise.all(ids.slice(0, WARN_READ).map((id) => api("GET", P(`/edge-services/${id}`)).catch(() => null)))).filter(Boolean);
    }
    const names = (list) => list.slice(0, 10).map((e) => e.name).join(", ") + (list.length > 10 ? " …" : "");
    const offline = edges.filter((e) => e.status === "offline");
    const old = edges.filter((e) => e.version && olderThanMin(e.version));
    box.innerHTML = `${missingLine}${offline.length ? `<p class="warning" id="warn-offline">${esc(t("wiz.warn_offline", { n: offline.length, names: names(offline) }))}</p>` : ""}
      ${old.length ? `<p class="warning" id="warn-old">${esc(t("wiz.warn_old", { n: old.length, names: names(old), min: MIN_NEURONEX.join(".") }))}</p>` : ""}
      ${total > edges.length && (offline.length || old.length) ? `<p class="muted">${esc(t("wiz.warn_partial", { n: edges.length, total }))}</p>` : ""}`;
    box.dataset.ready = "true";
  }

  async function showTargets(body, wizard, offset = 0) {
    const f = wizard.filter;
    body.innerHTML = `<form class="row" id="target-filters">
      <label>${esc(t("common.name"))}<input name="name" value="${esc(f.name)}"></label>
      <label>${esc(t("common.endpoint"))}<input name="endpoint" value="${esc(f.endpoint)}"></label>
      <label>${esc(t("common.version"))}<input name="version" value="${esc(f.version)}"></label>
      <label>${esc(t("common.tag"))}<input name="tag" value="${esc((f.tag || []).join(","))}"></label>
      <button type="submit" class="secondary">${esc(t("common.search"))}</button></form>
      <div class="row"><span id="selection" role="status"></span><button type="button" class="secondary" id="select-all"></button><button type="button" class="link" id="clear">${esc(t("wiz.clear"))}</button></div><div id="targets"></div>`;
    $("#target-filters", body).addEventListener("submit", (e) => {
      e.preventDefault();
      const form = Object.fromEntries(new FormData(e.target));
      wizard.filter = Object.fromEntries(Object.entries({ name: form.name, endpoint: form.endpoint, version: form.version, tag: form.tag ? form.tag.split(",").map((s) => s.trim()).filter(Boolean) : undefined }).filter(([, v]) => v && v.length));
      wizard.allMatching = false;
      wizard.excluded.clear();
      showTargets(body, wizard, 0);
    });
    const data = await api("GET", P(`/edge-services?${targetQuery(wizard.filter, { limit: 20, offset })}`));
    wizard.total = data.total;
    wizard.totalEstimated = Boolean(data.total_estimated);
    const update = () => {
      $("#selection", body).textContent = !wizard.allMatching ? t("wiz.selected", { n: wizard.selected.size })
        : wizard.excluded.size ? t("wiz.matching_but", { n: howMany(data.total - wizard.excluded.size, data.total_estimated), excluded: wizard.excluded.size }) : t("wiz.matching_all", { n: howMany(data.total, data.total_estimated) });
      $("#select-all", body).textContent = t("wiz.select_all", { n: howMany(data.total, data.total_estimated) });
      const chosen = (id) => (wizard.allMatching ? !wizard.excluded.has(id) : wizard.selected.has(id));
      const boxes = $$('input[type="checkbox"][data-id]', body);
      boxes.forEach((c) => { c.checked = chosen(c.dataset.id); });
      $("#page-all", body).checked = boxes.length > 0 && boxes.every((c) => c.checked);
    };
    const table = $("#targets", body);
    table.innerHTML = `<table><thead><tr><th><input type="checkbox" id="page-all" aria-label="${esc(t("wiz.page_all"))}"></th><th>${esc(t("common.status"))}</th><th>${esc(t("common.name"))}</th><th>${esc(t("common.endpoint"))}</th><th>${esc(t("common.version"))}</th><th>${esc(t("common.tags"))}</th></tr></thead>
      <tbody>${data.items.map((e) => `<tr><td><input type="checkbox" data-id="${esc(e.id)}" aria-label="${esc(e.name)}"></td><td>${marker(e.status === "online" ? "succeeded" : e.status === "offline" ? "failed" : "pending")}</td>
        <td>${esc(e.name)}</td><td>${reachOf(e)}</td><td>${esc(e.version || "")}</td><td>${e.tags.map((tag) => `<span class="tag">${esc(tag)}</span>`).join("")}</td></tr>`).join("")}</tbody></table>`;
    table.append(pager(data.total, offset, 20, (o) => showTargets(body, wizard, o), data.total_estimated));
    // With "all matching", unticking a row leaves that edge service out (sent as `exclude`).
    const choose = (c, on) => {
      if (wizard.allMatching) { if (on) wizard.excluded.delete(c.dataset.id); else wizard.excluded.set(c.dataset.id, c.getAttribute("aria-label")); }
      else if (on) wizard.selected.set(c.dataset.id, c.getAttribute("aria-label"));
      else wizard.selected.delete(c.dataset.id);
    };
    $$('input[type="checkbox"][data-id]', body).forEach((c) => c.addEventListener("change", () => { choose(c, c.checked); update(); }));
    $("#page-all", body).addEventListener("change", (e) => { $$('input[type="checkbox"][data-id]', body).forEach((c) => choose(c, e.target.checked)); update(); });
    $("#select-all", body).addEventListener("click", () => { wizard.allMatching = true; wizard.excluded.clear(); update(); });
    $("#clear", body).addEventListener("click", () => { wizard.allMatching = false; wizard.excluded.clear(); wizard.selected.clear(); update(); });
    update();
  }

  // ----- live result dialog -----

  function openResult(delivery) {
    let events = null;
    let failuresOnly = false;
    let offset = 0;
    let refreshTimer = null;
    const d = dialog(`<header><h2>${esc(t("res.title"))}: ${esc(delivery.template_name)}</h2><button type="button" class="secondary" data-close>${esc(t("common.close"))}</button></header>
      <div class="counts" role="status" aria-live="polite"><div>${esc(t("res.total"))}<b id="c-total">0</b></div><div>${esc(t("res.succeeded"))}<b id="c-ok">0</b></div>
      <div>${esc(t("res.failed"))}<b id="c-failed">0</b></div><div>${esc(t("res.pending"))}<b id="c-pending">0</b></div><div>${esc(t("res.state"))}<b id="c-state"></b></div></div>
      <div class="row"><label style="flex-direction:row;gap:6px;align-items:center"><input type="checkbox" id="only-failures"> ${esc(t("res.only_failures"))}</label>
      <button type="button" class="secondary" id="retry">${esc(t("res.retry"))}</button><button type="button" class="secondary" id="rollback">${esc(t("res.rollback"))}</button><button type="button" class="danger" id="cancel">${esc(t("res.cancel"))}</button></div>
      <div id="rollout-box"></div><div id="result-table"></div>`, () => { events?.close(); clearTimeout(refreshTimer); });
    let current = delivery.state;
    let shown = delivery;
    let canAdmin = false;
    api("GET", P("")).then((p) => { canAdmin = p.role === "admin"; renderRollout(); }).catch(() => {});
    // Waves as a bar (done, current, waiting), what the delivery waits for, and the controls its
    // state allows to project admins.
    const renderRollout = () => {
      const box = $("#rollout-box", d.el);
      const x = shown;
      const ends = x.wave_ends || [];
      const bar = ends.length ? `<div class="wave-bar" role="img" aria-label="${esc(t("roll.at_wave", { wave: x.wave, waves: x.waves }))}">${ends.map((end, i) => {
        const size = end - (i ? ends[i - 1] : 0);
        const place = i + 1 < x.wave ? "done" : i + 1 === x.wave ? "current" : "waiting";
        return `<span class="wave ${place}" style="flex:${Math.max(size, 1)}" title="${esc(t("roll.wave_n", { n: i + 1, size }))}">${esc(t("roll.wave_n", { n: i + 1, size }))}</span>`;
      }).join("")}</div>` : "";
      const notes = [];
      if (x.state === "awaiting_approval") notes.push(t("roll.awaiting", { n: (x.approvals || []).filter((a) => a.valid).length, required: x.approvals_required }));
      if (x.state === "scheduled" && x.start_at) notes.push(t("roll.scheduled", { at: new Date(x.start_at).toLocaleString() }));
      if (x.abort_reason) notes.push(x.abort_reason);
      const buttons = canAdmin ? [
        ["approve", x.state === "awaiting_approval"], ["pause", x.state === "running" && !x.abort_reason],
        ["resume", ["paused", "scheduled"].includes(x.state)], ["abort", !FINAL.includes(x.state) && !x.abort_reason],
      ].filter(([, on]) => on).map(([a]) => `<button type="button" class="${a === "abort" ? "danger" : "secondary"}" data-control="${a}">${esc(t("roll." + a))}</button>`).join("") : "";
      const rollback = x.rollback_id ? `<button type="button" class="link" id="open-rollback">${esc(t("roll.open_rollback"))}</button>` : "";
      box.innerHTML = `${bar}${notes.map((n) => `<p class="notice" role="status">${esc(n)}</p>`).join("")}<div class="row">${buttons}${rollback}</div>`;
      $$("[data-control]", box).forEach((b) => b.addEventListener("click", async () => {
        if (b.dataset.control === "abort" && !confirm(t("roll.abort_confirm"))) return;
        try { shown = await api("POST", P(`/deliveries/${delivery.id}/${b.dataset.control}`)); setCounts(shown.counts, shown.state); renderRollout(); watch(); } catch (error) { showError(box, error); }
      }));
      $("#open-rollback", box)?.addEventListener("click", async () => { const back = await api("GET", P(`/deliveries/${x.rollback_id}`)); d.close(); openResult(back); });
    };
    // Each reload, final event, retry and cancel takes a number; a reload's answer that arrives
    // after something newer was shown is dropped (it would put a finished delivery back to running).
    let generation = 0;
    const reloadDelivery = async () => {
      const asked = ++generation;
      const fresh = await api("GET", P(`/deliveries/${delivery.id}`));
      if (asked !== generation) return;
      shown = fresh; current = shown.state; setCounts(shown.counts, shown.state); renderRollout(); scheduleTable();
    };
    // Cancel only while it runs; Retry only once it ended with failures.
    const controls = (c) => {
      const finished = FINAL.includes(current);
      $("#cancel", d.el).hidden = finished;
      $("#cancel", d.el).disabled = current === "canceling";
      $("#retry", d.el).hidden = !finished || !(c.failed > 0);
      // A plan wrote nothing; anything else can be rolled back once it ended.
      $("#rollback", d.el).hidden = !finished || delivery.mode === "plan";
    };
    const setCounts = (c, stateName) => {
      $("#c-total", d.el).textContent = c.total; $("#c-ok", d.el).textContent = c.succeeded;
      $("#c-failed", d.el).textContent = c.failed; $("#c-pending", d.el).textContent = c.pending;
      if (stateName) { current = stateName; $("#c-state", d.el).textContent = t("state." + stateName); $("#c-state", d.el).dataset.state = stateName; }
      controls(c);
      // The rollout controls follow the state shown at once, not when the reload after an event answers.
      if (stateName && stateName !== shown.state) { shown = { ...shown, state: stateName }; renderRollout(); }
    };
    // Like the delivery's reloads: a page that answers after a newer one was asked is dropped, so a
    // load started before the final event cannot put running targets back over finished ones.
    let tableAsked = 0;
    const loadTable = async () => {
      const asked = ++tableAsked;
      const params = new URLSearchParams({ limit: 50, offset });
      if (failuresOnly) params.set("status", "failed");
      const data = await api("GET", P(`/deliveries/${delivery.id}/targets?${params}`));
      if (asked !== tableAsked) return;
      const box = $("#result-table", d.el);
      box.innerHTML = `<table><thead><tr><th>${esc(t("common.status"))}</th><th>${esc(t("common.name"))}</th><th>${esc(t("common.endpoint"))}</th><th>${esc(t("common.version"))}</th>${shown.waves ? `<th>${esc(t("roll.wave"))}</th>` : ""}<th>${esc(t("res.reason"))}</th></tr></thead>
        <tbody>${data.items.map((x) => `<tr data-status="${esc(x.status)}"><td>${marker(x.status)}</td><td>${esc(x.name)}</td><td>${esc(x.endpoint)}</td><td>${esc(x.version || "")}</td>${shown.waves ? `<td>${x.wave}</td>` : ""}<td>${x.failure_code ? `<b class="failure" data-code="${esc(x.failure_code)}">${esc(known(`fail.${x.failure_code}`, x.failure_code))}</b> ` : ""}${x.restored ? `<span class="tag">${esc(t("res.restored"))}</span> ` : ""}${esc(x.reason)}</td></tr>`).join("")}</tbody></table>`;
      box.append(pager(data.total, offset, 50, (o) => { offset = o; loadTable(); }));
    };
    const scheduleTable = () => { if (!refreshTimer) refreshTimer = setTimeout(() => { refreshTimer = null; loadTable(); }, 700); };
    const watch = () => {
      events?.close();
      events = new EventSource(P(`/deliveries/${delivery.id}/events`));
      events.addEventListener("counts", (e) => setCounts(JSON.parse(e.data), current));
      events.addEventListener("target", scheduleTable);
      ["state", "wave_started", "wave_finished", "paused", "resumed", "aborted", "approved"].forEach((name) => events.addEventListener(name, () => reloadDelivery().catch(() => {})));
      events.addEventListener("final", (e) => { generation++; const data = JSON.parse(e.data); setCounts(data.counts, data.state); events.close(); loadTable(); reloadDelivery().catch(() => {}); });
    };
    $("#only-failures", d.el).addEventListener("change", (e) => { failuresOnly = e.target.checked; offset = 0; loadTable(); });
    $("#retry", d.el).addEventListener("click", async () => { try { const again = await api("POST", P(`/deliveries/${delivery.id}/retry`)); generation++; setCounts(again.counts, again.state); loadTable(); watch(); } catch (error) { showError(d.el, error); } });
    $("#rollback", d.el).addEventListener("click", async () => {
      if (!confirm(t("res.rollback_confirm"))) return;
      try { const back = await api("POST", P(`/deliveries/${delivery.id}/rollback`), {}); d.close(); openResult(back); } catch (error) { showError(d.el, error); }
    });
    $("#cancel", d.el).addEventListener("click", async () => { try { const now = await api("POST", P(`/deliveries/${delivery.id}/cancel`)); generation++; setCounts(now.counts, now.state); } catch (error) { showError(d.el, error); } });
    setCounts(delivery.counts, delivery.state);
    renderRollout();
    loadTable();
    watch();
  }

  // Delivery states after which nothing changes without a retry.
  const FINAL = ["succeeded", "partial", "failed", "canceled", "aborted"];

  // ----- rollout settings: scheduled and waiting deliveries, maintenance windows, approvals -----

  async function renderRollouts(main) {
    const project = await api("GET", P(""));
    const admin = project.role === "admin";
    const windows = await api("GET", P("/maintenance-windows"));
    const recent = await api("GET", P("/deliveries?limit=200"));
    const waiting = recent.items.filter((x) => ["scheduled", "awaiting_approval", "paused"].includes(x.state));
    main.innerHTML = `<h1>${esc(t("nav.rollouts"))}</h1>
      <h2>${esc(t("roll.waiting_title"))}</h2>
      ${waiting.length ? `<table id="waiting"><thead><tr><th>${esc(t("res.state"))}</th><th>${esc(t("hist.what"))}</th><th>${esc(t("res.total"))}</th><th>${esc(t("roll.start_at"))}</th><th>${esc(t("hist.by"))}</th><th></th></tr></thead>
        <tbody>${waiting.map((x) => `<tr data-id="${esc(x.id)}"><td data-state="${esc(x.state)}">${esc(t("state." + x.state))}${x.waves ? ` <span class="tag">${esc(t("roll.at_wave", { wave: x.wave, waves: x.waves }))}</span>` : ""}</td><td>${esc(x.template_name)}</td><td>${x.counts.total}</td><td>${x.start_at ? esc(new Date(x.start_at).toLocaleString()) : ""}</td><td>${esc(x.created_by)}</td><td><button type="button" class="link" data-open>${esc(t("hist.open"))}</button></td></tr>`).join("")}</tbody></table>` : `<p class="muted">${esc(t("roll.none_waiting"))}</p>`}
      <h2>${esc(t("win.title"))}</h2>
      <table id="windows"><thead><tr><th>${esc(t("common.name"))}</th><th>${esc(t("win.tag"))}</th><th>${esc(t("win.cron"))}</th><th>${esc(t("win.minutes"))}</th><th>${esc(t("win.zone"))}</th><th>${esc(t("win.next"))}</th><th></th></tr></thead>
        <tbody>${windows.items.map((w) => `<tr data-id="${esc(w.id)}"><td>${esc(w.name)}</td><td>${esc(w.tag || t("win.every"))}</td><td><code>${esc(w.cron)}</code></td><td>${w.duration_minutes}</td><td>${esc(w.timezone)}</td>
          <td>${w.open_until ? esc(t("win.open_until", { at: new Date(w.open_until).toLocaleString() })) : w.next_opening ? esc(new Date(w.next_opening).toLocaleString()) : ""}</td><td>${admin ? `<button type="button" class="link" data-delete>${esc(t("common.delete"))}</button>` : ""}</td></tr>`).join("")}</tbody></table>
      ${admin ? `<form class="row" id="new-window"><label>${esc(t("common.name"))}<input name="name" required></label><label>${esc(t("win.tag"))}<input name="tag" placeholder="${esc(t("win.every"))}"></label>
        <label>${esc(t("win.cron"))}<input name="cron" required placeholder="0 2 * * 6"></label><label>${esc(t("win.minutes"))}<input name="minutes" type="number" min="1" value="120" required></label>
        <label>${esc(t("win.zone"))}<input name="timezone" value="${esc(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC")}"></label><button type="submit">${esc(t("common.add"))}</button></form>
      <h2>${esc(t("roll.approvals_title"))}</h2><form class="row" id="approvals"><label>${esc(t("roll.approvals_required"))}<input name="required" type="number" min="0" max="10" value="${project.approvals_required}"></label><button type="submit" class="secondary">${esc(t("common.save"))}</button></form>` : `<p class="muted">${esc(t("roll.approvals_now", { n: project.approvals_required }))}</p>`}`;
    $$("#waiting button[data-open]", main).forEach((b) => b.addEventListener("click", () => openResult(waiting.find((x) => x.id === b.closest("tr").dataset.id))));
    $$("#windows button[data-delete]", main).forEach((b) => b.addEventListener("click", async () => {
      if (!confirm(t("win.delete_confirm"))) return;
      try { await api("DELETE", P(`/maintenance-windows/${b.closest("tr").dataset.id}`)); renderRollouts(main); } catch (error) { showError(main, error); }
    }));
    $("#new-window", main)?.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target;
      try {
        await api("POST", P("/maintenance-windows"), { name: f.name.value, tag: f.tag.value || undefined, cron: f.cron.value, duration_minutes: Number(f.minutes.value), timezone: f.timezone.value || undefined });
        renderRollouts(main);
      } catch (error) { showError(f, error); }
    });
    $("#approvals", main)?.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await api("PATCH", P(""), { approvals_required: Number(e.target.required.value) }); renderRollouts(main); } catch (error) { showError(e.target, error); }
    });
  }

  // ----- history, audit, administration -----

  const DELIVERY_STATES = ["running", "awaiting_approval", "scheduled", "paused", "canceling", "succeeded", "partial", "failed", "canceled", "aborted"];

  async function renderHistory(main, offset = 0, filters = {}) {
    const params = new URLSearchParams({ limit: 50, offset });
    ["state", "template", "created_by"].forEach((k) => filters[k] && params.set(k, filters[k]));
    const data = await api("GET", P(`/deliveries?${params}`));
    main.innerHTML = `<h1>${esc(t("hist.title"))}</h1><form class="row" id="history-filters">
      <label>${esc(t("res.state"))}<select name="state"><option value="">${esc(t("hist.any_state"))}</option>${DELIVERY_STATES.map((x) => `<option value="${x}" ${filters.state === x ? "selected" : ""}>${esc(t("state." + x))}</option>`).join("")}</select></label>
      <label>${esc(t("hist.what"))}<input name="template" value="${esc(filters.template)}"></label>
      <label>${esc(t("hist.by"))}<input name="created_by" value="${esc(filters.created_by)}"></label>
      <button type="submit">${esc(t("common.search"))}</button></form><table><thead><tr><th>${esc(t("res.state"))}</th><th>${esc(t("hist.what"))}</th><th>${esc(t("res.total"))}</th><th>${esc(t("res.succeeded"))}</th><th>${esc(t("res.failed"))}</th><th>${esc(t("hist.by"))}</th><th>${esc(t("hist.when"))}</th><th></th></tr></thead>
      <tbody>${data.items.map((x) => `<tr data-id="${esc(x.id)}"><td data-state="${esc(x.state)}">${esc(t("state." + x.state))}${x.waves ? ` <span class="tag">${esc(t("roll.at_wave", { wave: x.wave, waves: x.waves }))}</span>` : ""}</td><td>${esc(x.template_name)} ${x.kind === "plugin" ? `(${esc(t("config.plugins"))})` : `v${x.template_version}`}${x.content_edited ? " *" : ""}${x.mode && x.mode !== "apply" ? ` <span class="tag">${esc(t("mode." + x.mode))}</span>` : ""}</td>
        <td>${x.counts.total}</td><td>${x.counts.succeeded}</td><td>${x.counts.failed}</td><td>${esc(x.created_by)}</td><td>${esc(when(x.created_at))}</td><td><button type="button" class="link" data-open>${esc(t("hist.open"))}</button>${x.mode !== "plan" && FINAL.includes(x.state) ? `<button type="button" class="link" data-rollback>${esc(t("res.rollback"))}</button>` : ""}</td></tr>`).join("")}</tbody></table>`;
    main.append(pager(data.total, offset, 50, (o) => renderHistory(main, o, filters)));
    $("#history-filters", main).addEventListener("submit", (e) => { e.preventDefault(); renderHistory(main, 0, Object.fromEntries(new FormData(e.target))); });
    const row = (b) => data.items.find((x) => x.id === b.closest("tr").dataset.id);
    $$("tbody button[data-open]", main).forEach((b) => b.addEventListener("click", () => openResult(row(b))));
    $$("tbody button[data-rollback]", main).forEach((b) => b.addEventListener("click", async () => {
      if (!confirm(t("res.rollback_confirm"))) return;
      try { openResult(await api("POST", P(`/deliveries/${row(b).id}/rollback`), {})); } catch (error) { showError(main, error); }
    }));
  }

  async function renderAudit(main, offset = 0, filters = {}) {
    const params = new URLSearchParams({ limit: 50, offset });
    ["action", "actor", "resource"].forEach((k) => filters[k] && params.set(k, filters[k]));
    if (filters.since) params.set("since", new Date(filters.since).getTime());
    if (filters.until) params.set("until", new Date(filters.until).getTime() + 86400000);
    main.innerHTML = `<h1>${esc(t("audit.title"))}</h1><form class="row" id="audit-filters">
      <label>${esc(t("audit.action"))}<input name="action" value="${esc(filters.action)}" placeholder="delivery."></label>
      <label>${esc(t("audit.actor"))}<input name="actor" value="${esc(filters.actor)}"></label>
      <label>${esc(t("audit.resource"))}<input name="resource" value="${esc(filters.resource)}"></label>
      <label>${esc(t("audit.since"))}<input type="date" name="since" value="${esc(filters.since)}"></label>
      <label>${esc(t("audit.until"))}<input type="date" name="until" value="${esc(filters.until)}"></label>
      <button type="submit">${esc(t("common.search"))}</button></form><div id="audit-table"></div>`;
    $("#audit-filters", main).addEventListener("submit", (e) => { e.preventDefault(); renderAudit(main, 0, Object.fromEntries(new FormData(e.target))); });
    const data = await api("GET", `/api/v1/audit?${params}`);
    const box = $("#audit-table", main);
    box.innerHTML = `<table><thead><tr><th>${esc(t("audit.time"))}</th><th>${esc(t("audit.actor"))}</th><th>${esc(t("audit.action"))}</th><th>${esc(t("audit.resource"))}</th><th>${esc(t("audit.project"))}</th><th>${esc(t("audit.outcome"))}</th><th>${esc(t("audit.details"))}</th></tr></thead>
      <tbody>${data.items.map((e) => `<tr><td>${esc(when(e.at))}</td><td>${esc(e.actor_name)}</td><td title="${esc(e.action)}">${esc(known(`audit.act.${e.action}`, e.action))}</td><td>${esc(known(`audit.res.${e.resource_type}`, e.resource_type))} ${esc(e.resource_name)}</td>
        <td>${esc(e.org_name)}${e.project_name ? " / " + esc(e.project_name) : ""}</td><td data-outcome="${esc(e.outcome)}">${esc(known(`audit.outcome.${e.outcome}`, known(`state.${e.outcome}`, e.outcome)))}</td><td>${auditDetails(e.details)}${linksToResult(e) ? `<button type="button" class="link" data-result="${esc(e.resource_id)}">${esc(t("audit.open_result"))}</button>` : ""}</td></tr>`).join("")}</tbody></table>`;
    box.append(pager(data.total, offset, 50, (o) => renderAudit(main, o, filters)));
    $$("button[data-result]", box).forEach((b) => b.addEventListener("click", async () => {
      try { openResult(await api("GET", P(`/deliveries/${b.dataset.result}`))); } catch (error) { showError(box, error); }
    }));
  }

  // A delivery's audit row opens its result, when it is in the project on screen (the result
  // dialog works within the chosen project).
  const linksToResult = (e) => e.resource_type === "delivery" && e.resource_id && e.project_id === state.project;

  // An audit entry's details as `key: value` lines; long values are cut (the whole is in the
  // tooltip), so no row overflows.
  const AUDIT_VALUE_CHARS = 80;
  function auditDetails(details) {
    if (!details || typeof details !== "object" || !Object.keys(details).length) return "";
    const line = ([key, value]) => {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      const cut = text.length > AUDIT_VALUE_CHARS ? `${text.slice(0, AUDIT_VALUE_CHARS)}…` : text;
      return `<div><span class="muted">${esc(key)}:</span> <span title="${esc(text)}">${esc(cut)}</span></div>`;
    };
    return `<div class="audit-details">${Object.entries(details).filter(([, v]) => v !== null && v !== undefined).map(line).join("")}</div>`;
  }

  const ROLES = ["admin", "viewer", "member"];
  const roleName = (role) => t(`role.${role}`);
  const roleOptions = (roles, chosen) => roles.map((r) => `<option value="${esc(r)}" ${r === chosen ? "selected" : ""}>${esc(roleName(r))}</option>`).join("");

  // Administration: the chosen project's members (project admins), organizations with their
  // projects and members (org admins), and users (system admins). Each section shows only to
  // whom the server lets act on it; the page itself is hidden from users who administer nothing.
  async function renderAdmin(main) {
    if (!state.canAdmin) {
      main.innerHTML = `<h1>${esc(t("admin.title"))}</h1><p class="muted">${esc(t("admin.no_access"))}</p>`;
      return;
    }
    const orgs = await api("GET", "/api/v1/orgs");
    const users = await api("GET", "/api/v1/users?limit=1000").catch(() => null);
    const project = state.project ? await api("GET", P("")).catch(() => null) : null;
    const members = project ? await api("GET", P("/members")).catch(() => null) : null;
    const projectLabel = state.projects.find((p) => p.id === state.project)?.label || "";
    main.innerHTML = `<h1>${esc(t("admin.title"))}</h1>
      <section id="project-members"></section>
      <section id="webhooks"></section>
      <h2>${esc(t("admin.orgs"))}</h2>
      ${state.me.is_system_admin ? `<form class="row" id="new-org"><label>${esc(t("admin.new_org"))}<input name="name" required></label><button type="submit">${esc(t("common.add"))}</button></form>` : ""}
      <table><thead><tr><th>${esc(t("common.name"))}</th><th>${esc(t("admin.projects"))}</th><th>${esc(t("admin.members"))}</th></tr></thead><tbody id="org-rows"></tbody></table>
      <section id="user-admin"></section>`;
    const again = async () => { await loadProjects(); renderShell("admin"); renderAdmin(main); };
    if (project?.role === "admin" && members) renderProjectMembers($("#project-members", main), projectLabel, members.items, users, again);
    if (project?.role === "admin") await renderWebhooks($("#webhooks", main), projectLabel);
    if (users && state.me.is_system_admin) renderUsers($("#user-admin", main), users.items, again);
    const rows = $("#org-rows", main);
    for (const org of orgs.items) {
      const projects = await api("GET", `/api/v1/orgs/${org.id}/projects`).catch(() => ({ items: [] }));
      const orgMembers = await api("GET", `/api/v1/orgs/${org.id}/members`).catch(() => ({ items: [] }));
      const row = document.createElement("tr");
      row.innerHTML = `<td>${esc(org.name)}</td><td>${projects.items.map((p) => esc(p.name)).join(", ")}
        <form class="row" data-org="${esc(org.id)}" data-form="project"><input name="name" aria-label="${esc(t("admin.new_project"))}" placeholder="${esc(t("admin.new_project"))}"><button type="submit" class="secondary">${esc(t("common.add"))}</button></form></td>
        <td>${orgMembers.items.map((m) => `${esc(m.username)} (${esc(roleName(m.role))})`).join(", ")}
        ${users ? `<form class="row" data-org="${esc(org.id)}" data-form="member"><select name="user" aria-label="${esc(t("app.username"))}">${users.items.map((u) => `<option value="${esc(u.id)}">${esc(u.username)}</option>`).join("")}</select>
        <select name="role" aria-label="${esc(t("common.role"))}">${roleOptions(ROLES, "member")}</select><button type="submit" class="secondary">${esc(t("admin.add_member"))}</button></form>` : ""}</td>`;
      rows.append(row);
    }
    $$("form[data-form]", main).forEach((form) => form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        if (form.dataset.form === "project") await api("POST", `/api/v1/orgs/${form.dataset.org}/projects`, { name: form.name.value });
        else await api("PUT", `/api/v1/orgs/${form.dataset.org}/members/${form.user.value}`, { role: form.role.value });
        await again();
      } catch (error) { showError(form, error); }
    }));
    $("#new-org", main)?.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await api("POST", "/api/v1/orgs", { name: e.target.name.value }); renderAdmin(main); } catch (error) { showError(e.target, error); }
    });
  }

  // The project's members: change a role in place, remove, add a member of the organization.
  function renderProjectMembers(box, label, members, users, again) {
    const memberIds = new Set(members.map((m) => m.user_id));
    const candidates = (users?.items || []).filter((u) => !memberIds.has(u.id) && !u.disabled);
    box.innerHTML = `<h2>${esc(t("admin.project_members", { project: label }))}</h2>
      <table><thead><tr><th>${esc(t("app.username"))}</th><th>${esc(t("common.role"))}</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${members.map((m) => `<tr data-user="${esc(m.user_id)}" data-name="${esc(m.username)}"><td>${esc(m.username)}</td>
        <td><select data-role aria-label="${esc(t("common.role"))}">${roleOptions(["admin", "viewer"], m.role)}</select></td>
        <td><button type="button" class="link" data-remove>${esc(t("admin.remove"))}</button></td></tr>`).join("")}</tbody></table>
      ${candidates.length ? `<form class="row" id="add-project-member"><select name="user" aria-label="${esc(t("app.username"))}">${candidates.map((u) => `<option value="${esc(u.id)}">${esc(u.username)}</option>`).join("")}</select>
        <select name="role" aria-label="${esc(t("common.role"))}">${roleOptions(["viewer", "admin"], "viewer")}</select><button type="submit" class="secondary">${esc(t("admin.add_member"))}</button></form>` : ""}
      <p class="muted">${esc(t("admin.member_hint"))}</p>`;
    $$("tr[data-user]", box).forEach((row) => {
      $("[data-role]", row).addEventListener("change", async (e) => {
        try { await api("PUT", P(`/members/${row.dataset.user}`), { role: e.target.value }); await again(); } catch (error) { showError(box, error); }
      });
      $("[data-remove]", row).addEventListener("click", async () => {
        if (!confirm(t("admin.remove_confirm", { user: row.dataset.name }))) return;
        try { await api("DELETE", P(`/members/${row.dataset.user}`)); await again(); } catch (error) { showError(box, error); }
      });
    });
    $("#add-project-member", box)?.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await api("PUT", P(`/members/${e.target.user.value}`), { role: e.target.role.value }); await again(); } catch (error) { showError(e.target, error); }
    });
  }

  // What a webhook can subscribe to (the server's `WebhookEvent`s but `ping`, which every webhook gets).
  const WEBHOOK_EVENTS = ["delivery.created", "delivery.approved", "delivery.started", "delivery.wave", "delivery.finished", "delivery.aborted", "delivery.rolled_back", "edge.drifted"];

  // The project's webhooks: add (the secret is shown once), test, see each one's calls, delete.
  async function renderWebhooks(box, label) {
    const hooks = await api("GET", P("/webhooks"));
    const eventNames = (events) => (events.includes("*") ? t("wh.all_events") : events.map((e) => known(`wh.event.${e}`, e)).join(", "));
    box.innerHTML = `<h2>${esc(t("wh.title", { project: label }))}</h2><p class="muted">${esc(t("wh.hint"))}</p>
      <table id="webhook-rows"><thead><tr><th>URL</th><th>${esc(t("wh.events"))}</th><th>${esc(t("hist.by"))}</th><th>${esc(t("hist.when"))}</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${hooks.items.map((h) => `<tr data-id="${esc(h.id)}" data-url="${esc(h.url)}"><td>${esc(h.url)}</td><td>${esc(eventNames(h.events))}</td><td>${esc(h.created_by)}</td><td>${esc(when(h.created_at))}</td>
        <td><button type="button" class="link" data-test>${esc(t("wh.test"))}</button><button type="button" class="link" data-calls>${esc(t("wh.calls"))}</button><button type="button" class="link" data-delete>${esc(t("common.delete"))}</button></td></tr>`).join("")}</tbody></table>
      ${hooks.items.length ? "" : `<p class="muted">${esc(t("wh.none"))}</p>`}
      <form id="new-webhook"><div class="row"><label>URL<input name="url" type="url" required placeholder="https://hooks.example.com/edgefleet"></label>
        <label>${esc(t("wh.secret"))}<input name="secret" type="password" autocomplete="new-password" minlength="16" placeholder="${esc(t("wh.secret_hint"))}"></label></div>
        <fieldset><legend>${esc(t("wh.events"))}</legend><label><input type="checkbox" name="all" checked> ${esc(t("wh.all_events"))}</label>
        ${WEBHOOK_EVENTS.map((e) => `<label><input type="checkbox" name="event" value="${esc(e)}"> ${esc(known(`wh.event.${e}`, e))}</label>`).join("")}</fieldset>
        <button type="submit">${esc(t("wh.add"))}</button></form><div id="webhook-out"></div>`;
    const out = $("#webhook-out", box);
    $("#new-webhook", box).addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = e.target;
      const events = form.all.checked ? ["*"] : $$('input[name="event"]:checked', form).map((c) => c.value);
      const body = { url: form.url.value, events, ...(form.secret.value ? { secret: form.secret.value } : {}) };
      try {
        const made = await api("POST", P("/webhooks"), body);
        await renderWebhooks(box, label);
        $("#webhook-out", box).innerHTML = `<p class="notice" role="status" id="webhook-secret">${esc(t("wh.secret_once"))} <code>${esc(made.secret)}</code></p>`;
      } catch (error) { showError(form, error); }
    });
    $$("tr[data-id]", box).forEach((row) => {
      const path = P(`/webhooks/${row.dataset.id}`);
      $("[data-test]", row).addEventListener("click", async () => {
        try {
          const call = await api("POST", `${path}/test`);
          out.innerHTML = `<p class="notice" role="status" id="webhook-test" data-state="${esc(call.state)}">${esc(call.state === "delivered" ? t("wh.test_ok", { status: call.status_code }) : t("wh.test_failed", { error: call.error || call.status_code || "" }))}</p>`;
        } catch (error) { showError(out, error); }
      });
      $("[data-calls]", row).addEventListener("click", async () => {
        try {
          const calls = await api("GET", `${path}/deliveries?limit=50`);
          out.innerHTML = `<h3>${esc(t("wh.calls_of", { url: row.dataset.url }))}</h3><table id="webhook-calls"><thead><tr><th>${esc(t("hist.when"))}</th><th>${esc(t("wh.event"))}</th><th>${esc(t("res.state"))}</th><th>${esc(t("wh.attempts"))}</th><th>${esc(t("wh.answer"))}</th><th>${esc(t("wh.next"))}</th></tr></thead>
            <tbody>${calls.items.map((c) => `<tr><td>${esc(when(c.created_at))}</td><td>${esc(known(`wh.event.${c.event}`, c.event))}</td><td data-state="${esc(c.state === "delivered" ? "succeeded" : c.state)}">${esc(t(`wh.state.${c.state}`))}</td><td>${c.attempts}</td>
              <td class="muted">${esc(c.status_code ? `HTTP ${c.status_code}` : "")} ${esc(c.error || "")}</td><td>${esc(c.state === "pending" ? when(c.next_at) : "")}</td></tr>`).join("")}</tbody></table>
            ${calls.items.length ? "" : `<p class="muted">${esc(t("wh.no_calls"))}</p>`}`;
        } catch (error) { showError(out, error); }
      });
      $("[data-delete]", row).addEventListener("click", async () => {
        if (!confirm(t("common.confirm_delete", { name: row.dataset.url }))) return;
        try { await api("DELETE", path); await renderWebhooks(box, label); } catch (error) { showError(out, error); }
      });
    });
  }

  // Users (system admins): create, disable or enable, reset a password.
  function renderUsers(box, users, again) {
    box.innerHTML = `<h2>${esc(t("admin.users"))}</h2><form class="row" id="new-user"><label>${esc(t("app.username"))}<input name="username" required></label>
      <label>${esc(t("app.password"))}<input name="password" type="password" required></label><button type="submit">${esc(t("admin.new_user"))}</button></form>
      <table><thead><tr><th>${esc(t("app.username"))}</th><th>${esc(t("admin.system_admin"))}</th><th>${esc(t("common.status"))}</th><th>${esc(t("common.actions"))}</th></tr></thead>
      <tbody>${users.map((u) => `<tr data-user="${esc(u.id)}" data-name="${esc(u.username)}"><td>${esc(u.username)}</td><td>${u.is_system_admin ? "✓" : ""}</td>
        <td>${u.disabled ? `<span class="badge">${esc(t("admin.disabled"))}</span>` : esc(t("admin.active"))}</td>
        <td>${u.id === state.me.id ? "" : `<button type="button" class="link" data-toggle>${esc(t(u.disabled ? "admin.enable" : "admin.disable"))}</button>
          <form class="row inline" data-reset><input name="password" type="password" autocomplete="new-password" aria-label="${esc(t("admin.new_password"))}" placeholder="${esc(t("admin.new_password"))}" required><button type="submit" class="secondary">${esc(t("admin.reset_password"))}</button></form>`}</td></tr>`).join("")}</tbody></table>`;
    $$("tr[data-user]", box).forEach((row) => {
      const user = users.find((u) => u.id === row.dataset.user);
      $("[data-toggle]", row)?.addEventListener("click", async () => {
        if (!user.disabled && !confirm(t("admin.disable_confirm", { user: user.username }))) return;
        try { await api("PATCH", `/api/v1/users/${user.id}`, { disabled: !user.disabled }); await again(); } catch (error) { showError(row, error); }
      });
      $("[data-reset]", row)?.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          await api("PATCH", `/api/v1/users/${user.id}`, { password: e.target.password.value });
          e.target.reset();
          const done = document.createElement("span");
          done.className = "muted";
          done.setAttribute("role", "status");
          done.textContent = t("admin.password_reset_done", { user: user.username });
          e.target.append(done);
        } catch (error) { showError(e.target, error); }
      });
    });
    $("#new-user", box).addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await api("POST", "/api/v1/users", { username: e.target.username.value, password: e.target.password.value }); await again(); } catch (error) { showError(e.target, error); }
    });
  }

  // ----- wiring -----

  $("#project").addEventListener("change", (e) => { state.project = e.target.value; localStorage.setItem("project", state.project); route(); });
  $("#lang").addEventListener("click", async () => {
    lang = lang === "en" ? "zh" : "en";
    localStorage.setItem("lang", lang);
    await api("PATCH", "/api/v1/me", { language: lang }).catch(() => {});
    route();
  });
  $("#logout").addEventListener("click", async () => { await api("POST", "/api/v1/auth/logout").catch(() => {}); state.me = null; location.hash = "#/login"; route(); });
  window.addEventListener("hashchange", route);
  route();
})();
