// obv-eval report: inlined into every report page; reads the JSON in #report-data.
"use strict";
(function () {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 50;
  const pair = D.runs.length > 1;
  const esc = (s) => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
  const pct = (v) => (v === null || v === undefined) ? "n/a" : (100 * v).toFixed(1);
  const ci = (e) => (e.ci_low === null || e.ci_low === undefined) ? "" :
    " [" + pct(e.ci_low) + ", " + pct(e.ci_high) + "]";
  const el = (tag, attrs, html) => { const n = document.createElement(tag);
    for (const k in attrs || {}) n.setAttribute(k, attrs[k]); if (html !== undefined) n.innerHTML = html; return n; };
  D.items.forEach((it) => { it.text = [it.t, it.d, it.q, it.g, it.p, it.x, it.r, it.jr,
    it.b ? it.b.p : "", Object.values(it.c).join(" ")].join("\n").toLowerCase(); });

  // Summary
  const summary = document.getElementById("summary");
  let s = "<h2>Runs</h2><table><tr><th>task</th>";
  D.runs.forEach((r) => { s += "<th>" + esc(r.model) + " " + esc(r.run_id) + "</th>"; });
  s += "<th>n</th><th>failed</th><th>unparsed</th><th>unscored</th></tr>";
  Object.keys(D.runs[0].tasks).forEach((t) => {
    const a = D.runs[0].tasks[t];
    s += "<tr><td>" + esc(t) + " (" + esc(a.metric) + ")</td>";
    D.runs.forEach((r) => { const e = r.tasks[t];
      s += "<td>" + (e ? pct(e.mean) + ci(e) : "-") + "</td>"; });
    s += "<td>" + a.n + "</td><td>" + a.failed + "</td><td>" + a.unparsed + "</td><td>" + a.unscored + "</td></tr>";
  });
  s += "</table>";
  if (D.runs[0].judge) s += "<p class='placeholder'>judge: " + esc(D.runs[0].judge) + "</p>";
  if (pair) {
    const counts = {improved: 0, regressed: 0};
    D.items.forEach((it) => { if (it.f in counts) counts[it.f] += 1; });
    s += "<h2 id='pair-head'>" + esc(D.runs[0].model) + " minus " + esc(D.runs[1].model) +
      " (paired items; 95% interval clustered by source)</h2><table id='pair-table'><tr><th>task</th>" +
      "<th>paired n</th><th>difference (pts)</th><th>95% CI</th><th>improved</th><th>regressed</th>" +
      "<th>paired test p</th></tr>";
    Object.keys(D.pair).forEach((t) => { const e = D.pair[t];
      const sign = (v) => (v > 0 ? "+" : "") + pct(v);
      const imp = D.items.filter((it) => it.t === t && it.f === "improved").length;
      const reg = D.items.filter((it) => it.t === t && it.f === "regressed").length;
      s += "<tr><td>" + esc(t) + "</td><td>" + e.n + "</td><td>" + (e.n ? sign(e.mean) : "-") + "</td><td>" +
        (e.ci_low === null || e.ci_low === undefined ? "-" : "[" + sign(e.ci_low) + ", " + sign(e.ci_high) + "]") +
        "</td><td>" + imp + "</td><td>" + reg + "</td><td>" +
        (e.pvalue === undefined || e.pvalue === null ? "-" : e.pvalue.toPrecision(3) + " (" + esc(e.method) + ")") + "</td></tr>"; });
    s += "</table><p id='flip-counts'>Flipped items: <b>" + counts.improved + "</b> improved, <b>" +
      counts.regressed + "</b> regressed (filter &ldquo;flips&rdquo; below).</p>";
  }
  summary.innerHTML = s;

  // Controls
  const tasks = [...new Set(D.items.map((it) => it.t))];
  const cats = [...new Set(D.items.flatMap((it) => Object.entries(it.c).map(([k, v]) => k + "=" + v)))].sort();
  const controls = document.getElementById("controls");
  const select = (id, label, values) => { const l = el("label", {}, esc(label) + " ");
    const sel = el("select", {id: id}); sel.appendChild(el("option", {value: ""}, "all"));
    values.forEach((v) => sel.appendChild(el("option", {value: v}, esc(v)))); l.appendChild(sel);
    controls.appendChild(l); return sel; };
  const F = {task: select("f-task", "task", tasks), category: select("f-category", "category", cats),
    outcome: select("f-outcome", "outcome", D.outcomes)};
  if (pair) F.flip = select("f-flip", "flips", ["flipped", "improved", "regressed", "same", "unpaired", "only_run"]);
  const search = el("input", {type: "search", id: "f-search", placeholder: "search question, answers, reasons"});
  controls.appendChild(search);

  let page = 0, shown = [];
  const state = () => { const q = {}; for (const k in F) if (F[k].value) q[k] = F[k].value;
    if (search.value) q.q = search.value; if (page) q.page = String(page + 1); return q; };
  const matches = (it) => {
    if (F.task.value && it.t !== F.task.value) return false;
    if (F.outcome.value && it.o !== F.outcome.value) return false;
    if (F.category.value) { const [k, v] = F.category.value.split(/=(.*)/s); if (it.c[k] !== v) return false; }
    if (F.flip && F.flip.value) { if (F.flip.value === "flipped") {
      if (it.f !== "improved" && it.f !== "regressed") return false; } else if (it.f !== F.flip.value) return false; }
    const q = search.value.trim().toLowerCase(); return !q || it.text.includes(q);
  };
  const sheet = (keys) => keys.map((k) => { const m = D.media[k];
    if (!m) return "";
    if (m.missing) return "<div class='placeholder media-missing'>" + esc(m.missing) + "</div>";
    const head = m.kind === "video" ? esc(m.name) + ": " + m.sampled + " frames sampled of " + m.total +
      " (" + m.fps + " fps), each " + m.size + (m.frames.length < m.sampled ? "; " + m.frames.length + " shown" : "")
      : esc(m.name) + ", " + m.size + " as given to the model";
    const figs = m.frames.map((src, i) => "<figure><img alt='frame' src='" + src + "'>" +
      (m.indices ? "#" + m.indices[i] : "") + "</figure>").join("");
    return "<div class='sheet-head'>" + head + "</div><div class='sheet'>" + figs + "</div>"; }).join("");
  const fields = (r, who) => {
    const scores = Object.entries(r.sc || {}).map(([k, v]) => k + " " + (v === null ? "unscored" : v)).join(", ");
    let h = "<dt>" + who + "reply</dt><dd class='reply'>" + esc(r.p) + "</dd>" +
      "<dt>extracted</dt><dd>" + (r.x === null || r.x === undefined ? "<i>none</i>" : esc(r.x)) + "</dd>" +
      "<dt>score</dt><dd>" + (r.s === null || r.s === undefined ? "unscored" : r.s) + " (" + esc(r.o) + ")</dd>" +
      "<dt>all scores</dt><dd>" + esc(scores) + "</dd>";
    if (r.jv !== undefined) h += "<dt>judge</dt><dd>" + (r.jv === null ? "no verdict" : r.jv ? "correct" : "wrong") +
      (r.jr ? ": " + esc(r.jr) : "") + "</dd>";
    if (r.r) h += "<dt>" + (r.st === "failed" ? "failure" : "reason") + "</dt><dd>" + esc(r.r) + "</dd>";
    if (r.o === "unparsed") h += "<dt>unparsed</dt><dd>no answer could be extracted from the reply</dd>";
    h += "<dt>tokens</dt><dd>prompt " + esc(r.tk[0]) + ", output " + esc(r.tk[1]) +
      (r.fr && r.fr.length ? "; frames " + r.fr.join(", ") : "") + "</dd>";
    return h; };
  const card = (it) => {
    const badge = it.f ? "<span class='badge " + it.f + "'>" + esc(it.f) + "</span>" : "";
    let h = "<h3>" + esc(it.t) + " #" + esc(it.d) + "<span class='badge'>" + esc(it.o) + "</span>" + badge + "</h3>" +
      sheet(it.m) + "<dl><dt>question</dt><dd>" + esc(it.q) + "</dd>";
    if (it.opt.length) h += "<dt>options</dt><dd>" + it.opt.map((o) => esc(o[0] + ". " + o[1])).join("\n") + "</dd>";
    h += "<dt>gold</dt><dd class='gold'>" + esc(it.g) + "</dd>";
    const cs = Object.entries(it.c).map(([k, v]) => k + ": " + v).join("; ");
    if (cs) h += "<dt>categories</dt><dd>" + esc(cs) + "</dd>";
    h += "</dl>";
    if (it.b) h += "<div class='cols'><dl>" + fields(it, esc(D.runs[0].model) + " ") + "</dl><dl>" +
      fields(it.b, esc(D.runs[1].model) + " ") + "</dl></div>";
    else h += "<dl>" + fields(it, "") + "</dl>";
    h += "<details><summary>prompt</summary><pre>" + esc(it.pr) + "</pre></details>";
    const n = el("article", {"class": "item " + it.o, "data-task": it.t, "data-doc": it.d, "data-outcome": it.o,
      "data-flip": it.f || ""}, h);
    return n; };
  const render = () => {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE)); page = Math.min(page, pages - 1);
    const box = document.getElementById("items"); box.replaceChildren();
    const frag = document.createDocumentFragment();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach((it) => frag.appendChild(card(it)));
    box.appendChild(frag);
    document.getElementById("status").innerHTML = "<span id='match-count'>" + shown.length +
      "</span> of " + D.items.length + " items match; page " + (page + 1) + " of " + pages;
    ["pager-top", "pager"].forEach((id) => { const p = document.getElementById(id); p.replaceChildren();
      const b = (label, to, off) => { const x = el("button", {type: "button"}, label); x.disabled = off;
        x.addEventListener("click", () => { page = to; render(); window.scrollTo(0, 0); }); p.appendChild(x); };
      b("&laquo; first", 0, page === 0); b("&lsaquo; previous", page - 1, page === 0);
      b("next &rsaquo;", page + 1, page >= pages - 1); b("last &raquo;", pages - 1, page >= pages - 1); });
    const q = new URLSearchParams(state()).toString();
    if (q !== location.hash.slice(1)) history.replaceState(null, "", q ? "#" + q : location.pathname);
  };
  const apply = () => { shown = D.items.filter(matches); render(); };
  const fromHash = () => { const q = new URLSearchParams(location.hash.slice(1));
    for (const k in F) F[k].value = q.get(k) || ""; search.value = q.get("q") || "";
    page = Math.max(0, parseInt(q.get("page") || "1", 10) - 1); shown = D.items.filter(matches); render(); };
  for (const k in F) F[k].addEventListener("change", () => { page = 0; apply(); });
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { page = 0; apply(); }, 150); });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.body.setAttribute("data-render-ms", String(Math.round(performance.now() - t0)));
  document.body.setAttribute("data-ready", "1");
})();
