// obv-eval report: inlined into every report page; reads the JSON in #report-data.
// Every value from the run's files reaches the page as text (text nodes and attributes), never as
// markup: a question or reply holding an img tag with an onerror handler shows as those characters.
"use strict";
(function () {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 50;
  const pair = D.runs.length > 1;
  const str = (s) => String(s === null || s === undefined ? "" : s);
  const pct = (v) => (v === null || v === undefined) ? "not scored" : (100 * v).toFixed(1);
  const ci = (e) => (e.ci_low === null || e.ci_low === undefined) ? "" :
    " [" + pct(e.ci_low) + ", " + pct(e.ci_high) + "]";
  // h(tag, {attr: value}, child...): children are nodes, or strings and numbers shown as text.
  const h = (tag, attrs, ...kids) => { const n = document.createElement(tag);
    for (const k in attrs || {}) n.setAttribute(k, str(attrs[k]));
    kids.flat(Infinity).forEach((k) => { if (k !== null && k !== undefined && k !== false)
      n.appendChild(k instanceof Node ? k : document.createTextNode(str(k))); });
    return n; };
  D.items.forEach((it) => { it.text = [it.t, it.d, it.q, it.g, it.p, it.x, it.r, it.jr,
    it.b ? it.b.p : "", Object.values(it.c).join(" ")].map(str).join("\n").toLowerCase(); });

  // Summary
  const summary = document.getElementById("summary");
  summary.appendChild(h("h2", {}, "Runs"));
  summary.appendChild(h("table", {},
    h("tr", {}, h("th", {}, "task"), D.runs.map((r) => h("th", {}, str(r.model) + " " + str(r.run_id))),
      ["n", "failed", "unparsed", "unscored"].map((x) => h("th", {}, x))),
    Object.keys(D.runs[0].tasks).map((t) => { const a = D.runs[0].tasks[t];
      return h("tr", {}, h("td", {}, t + " (" + str(a.metric) + ")"),
        D.runs.map((r) => { const e = r.tasks[t]; return h("td", {}, e ? pct(e.mean) + ci(e) : "-"); }),
        [a.n, a.failed, a.unparsed, a.unscored].map((x) => h("td", {}, x))); })));
  if (D.runs[0].judge) summary.appendChild(h("p", {"class": "placeholder"}, "judge: " + str(D.runs[0].judge)));
  if (pair) {
    const counts = {improved: 0, regressed: 0};
    D.items.forEach((it) => { if (it.f in counts) counts[it.f] += 1; });
    const sign = (v) => (v > 0 ? "+" : "") + pct(v);
    summary.appendChild(h("h2", {id: "pair-head"}, str(D.runs[0].model) + " minus " + str(D.runs[1].model) +
      " (paired items; 95% interval clustered by source)"));
    summary.appendChild(h("table", {id: "pair-table"},
      h("tr", {}, ["task", "paired n", "difference (pts)", "95% CI", "improved", "regressed", "paired test p"]
        .map((x) => h("th", {}, x))),
      Object.keys(D.pair).map((t) => { const e = D.pair[t];
        const imp = D.items.filter((it) => it.t === t && it.f === "improved").length;
        const reg = D.items.filter((it) => it.t === t && it.f === "regressed").length;
        return h("tr", {}, h("td", {}, t), h("td", {}, e.n), h("td", {}, e.n ? sign(e.mean) : "-"),
          h("td", {}, e.ci_low === null || e.ci_low === undefined ? "-" :
            "[" + sign(e.ci_low) + ", " + sign(e.ci_high) + "]"),
          h("td", {}, imp), h("td", {}, reg),
          h("td", {}, typeof e.pvalue === "number" ? e.pvalue.toPrecision(3) + " (" + str(e.method) + ")" : "-")); })));
    summary.appendChild(h("p", {id: "flip-counts"}, "Flipped items: ", h("b", {}, counts.improved), " improved, ",
      h("b", {}, counts.regressed), " regressed (filter \u201cflips\u201d below)."));
  }

  // Controls
  const tasks = [...new Set(D.items.map((it) => it.t))];
  const cats = [...new Set(D.items.flatMap((it) => Object.entries(it.c).map(([k, v]) => k + "=" + v)))].sort();
  const controls = document.getElementById("controls");
  const select = (id, label, values) => {
    const sel = h("select", {id: id}, h("option", {value: ""}, "all"), values.map((v) => h("option", {value: v}, v)));
    controls.appendChild(h("label", {}, label + " ", sel)); return sel; };
  const F = {task: select("f-task", "task", tasks), category: select("f-category", "category", cats),
    outcome: select("f-outcome", "outcome", D.outcomes)};
  if (pair) F.flip = select("f-flip", "flips", ["flipped", "improved", "regressed", "same", "unpaired", "only_run"]);
  const search = h("input", {type: "search", id: "f-search", placeholder: "search question, answers, reasons"});
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
    if (!m) return null;
    if (m.missing) return h("div", {"class": "placeholder media-missing"}, m.missing);
    const head = m.kind === "video" ? str(m.name) + ": " + m.sampled + " frames sampled of " + m.total +
      " (" + m.fps + " fps), each " + m.size + (m.frames.length < m.sampled ? "; " + m.frames.length + " shown" : "")
      : str(m.name) + ", " + m.size + " as given to the model";
    // only the report's own embedded thumbnails are shown: nothing is fetched from elsewhere
    const figs = m.frames.map((src, i) => str(src).startsWith("data:image/") ?
      h("figure", {}, h("img", {alt: "frame", src: src}), m.indices ? "#" + m.indices[i] : null) : null);
    return [h("div", {"class": "sheet-head"}, head), h("div", {"class": "sheet"}, figs)]; });
  const fields = (r, who) => {
    const scores = Object.entries(r.sc || {}).map(([k, v]) => k + " " + (v === null ? "unscored" : str(v))).join(", ");
    const row = (term, value, attrs) => [h("dt", {}, term), h("dd", attrs || {}, value)];
    const tk = r.tk || [];
    return [
      row(who + "reply", r.p, {"class": "reply"}),
      row("extracted", r.x === null || r.x === undefined ? h("i", {}, "none") : r.x),
      row("score", (r.s === null || r.s === undefined ? "unscored" : str(r.s)) + " (" + str(r.o) + ")"),
      row("all scores", scores),
      r.jv !== undefined ? row("judge", (r.jv === null ? "no verdict" : r.jv ? "correct" : "wrong") +
        (r.jr ? ": " + str(r.jr) : "")) : null,
      r.r ? row(r.st === "failed" ? "failure" : "reason", r.r) : null,
      r.o === "unparsed" ? row("unparsed", "no answer could be extracted from the reply") : null,
      row("tokens", "prompt " + str(tk[0]) + ", output " + str(tk[1]) +
        (Array.isArray(r.fr) && r.fr.length ? "; frames " + r.fr.map(str).join(", ") : "")),
    ]; };
  const card = (it) => {
    const cs = Object.entries(it.c).map(([k, v]) => k + ": " + v).join("; ");
    const opts = Array.isArray(it.opt) ? it.opt : [];
    return h("article", {"class": "item " + it.o, "data-task": it.t, "data-doc": it.d, "data-outcome": it.o,
      "data-flip": it.f || ""},
      h("h3", {}, str(it.t) + " #" + str(it.d), h("span", {"class": "badge"}, it.o),
        it.f ? h("span", {"class": "badge " + it.f}, it.f) : null),
      sheet(it.m || []),
      h("dl", {}, h("dt", {}, "question"), h("dd", {}, it.q),
        opts.length ? [h("dt", {}, "options"), h("dd", {}, opts.map((o) => str(o[0]) + ". " + str(o[1])).join("\n"))] : null,
        h("dt", {}, "gold"), h("dd", {"class": "gold"}, it.g),
        cs ? [h("dt", {}, "categories"), h("dd", {}, cs)] : null),
      it.b ? h("div", {"class": "cols"}, h("dl", {}, fields(it, str(D.runs[0].model) + " ")),
        h("dl", {}, fields(it.b, str(D.runs[1].model) + " "))) : h("dl", {}, fields(it, "")),
      h("details", {}, h("summary", {}, "prompt"), h("pre", {}, it.pr))); };
  const render = () => {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE)); page = Math.min(page, pages - 1);
    const box = document.getElementById("items"); box.replaceChildren();
    const frag = document.createDocumentFragment();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach((it) => frag.appendChild(card(it)));
    box.appendChild(frag);
    document.getElementById("status").replaceChildren(h("span", {id: "match-count"}, shown.length),
      " of " + D.items.length + " items match; page " + (page + 1) + " of " + pages);
    ["pager-top", "pager"].forEach((id) => { const p = document.getElementById(id); p.replaceChildren();
      const b = (label, to, off) => { const x = h("button", {type: "button"}, label); x.disabled = off;
        x.addEventListener("click", () => { page = to; render(); window.scrollTo(0, 0); }); p.appendChild(x); };
      b("\u00ab first", 0, page === 0); b("\u2039 previous", page - 1, page === 0);
      b("next \u203a", page + 1, page >= pages - 1); b("last \u00bb", pages - 1, page >= pages - 1); });
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
