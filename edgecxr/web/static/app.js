// edgecxr status page. Polls this origin only; builds every element with textContent, never
// innerHTML, so a file name like <img src=x onerror=alert(1)>.png is shown as text.
"use strict";
(() => {
  const MAX_ROWS = 500;
  const $ = (id) => document.getElementById(id);
  const rows = $("rows");
  const bySeq = new Map();
  const labels = new Set();
  let next = 0;
  let pollMs = 2000;
  let lastContact = null;
  let bundleRule = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "unknown";
    const gb = n / 1e9;
    return gb >= 10 ? `${gb.toFixed(0)} GB` : gb >= 1 ? `${gb.toFixed(1)} GB` : `${(n / 1e6).toFixed(0)} MB`;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    return `${(seconds / 3600).toFixed(1)} h ago`;
  }

  function clock(iso) {
    const date = new Date(iso);
    if (isNaN(date)) return iso || "-";
    const today = date.toDateString() === new Date().toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function setHealth(state, headline, detail) {
    $("health").dataset.state = state;
    $("health-state").textContent = headline;
    $("health-detail").textContent = detail;
  }

  function showStatus(s) {
    if (s.state === "starting") {
      setHealth("starting", "starting", "no heartbeat written yet");
    } else if (s.stale) {
      setHealth("stale", "stale", `no heartbeat for ${Math.round(s.age_s)} s: the watcher is stopped or hung`);
    } else if (s.state === "running") {
      setHealth("alive", "alive", `watching for ${ago(s.uptime_s).replace(" ago", "")}`);
    } else {
      setHealth("stopped", s.state, "the watcher has stopped");
    }
    $("h-heartbeat").textContent = s.updated ? `${ago(s.age_s)} (${clock(s.updated)})` : "never";
    $("h-engine").textContent = s.bundle ? `${s.bundle}: ${s.backend}/${s.precision}` : "-";
    $("h-reason").textContent = s.reason || "-";
    bundleRule = s.decision_rule;
    $("h-rule").textContent = s.decision_rule || "-";
    $("h-backlog").textContent = s.backlog === undefined || s.backlog === null ? "-"
      : `${s.backlog} ready, ${s.waiting || 0} still being written`;
    $("h-processed").textContent = s.processed ?? "-";
    $("h-refused").textContent = s.refused ?? "-";
    $("h-error").textContent = s.last_error || "none";
    $("h-disk").textContent = bytes(s.disk_free_bytes);
  }

  function lostContact() {
    const since = lastContact ? ` since ${lastContact.toLocaleTimeString()}` : "";
    setHealth("unreachable", "no contact", `the watcher is stopped or unreachable${since}`);
  }

  function probabilities(r) {
    return Object.entries(r.probabilities || {}).map(([name, p]) => `P(${name}) ${Number(p).toFixed(3)}`).join(", ");
  }

  function setMedia(tr, media) {
    const cell = tr.querySelector("td.media");
    for (const [kind, title] of [["thumb", "what the model saw"], ["map", "explanation map"]]) {
      if (!media[kind] || cell.querySelector(`img.${kind}`)) continue;
      const img = el("img", null, kind);
      img.loading = "lazy";  // a burst adds hundreds of rows; only those scrolled into view are fetched
      img.width = img.height = 48;
      img.src = media[kind];
      img.alt = title;
      img.title = title;
      cell.append(img);
    }
  }

  function addLabel(label) {
    if (labels.has(label)) return;
    labels.add(label);
    const option = el("option", label);
    option.value = label;
    $("filter").insertBefore(option, $("filter").lastElementChild);
  }

  function addRow(r) {
    const ok = r.status === "ok";
    const tr = el("tr");
    tr.dataset.seq = r.seq;
    tr.dataset.status = r.status;
    tr.dataset.label = ok ? r.label : "refused";
    tr.append(el("td", null, "media"));
    const file = el("td", null, "file");
    file.append(el("span", r.path, "path"));
    if (!ok) file.append(el("div", r.reason, "reason"));
    tr.append(file);
    tr.append(el("td", ok ? r.label : `refused: ${r.error_code}`, "result"));
    const p = el("td", ok && r.p_positive !== null ? r.p_positive.toFixed(3) : "-", "p");
    if (ok && r.positive_class) p.title = `P(${r.positive_class})`;
    tr.append(p);
    const rule = el("td", ok ? (r.decision || bundleRule || "-") : "-", "decision");
    if (ok) rule.title = probabilities(r);
    tr.append(rule);
    tr.append(el("td", clock(r.completed_at), "time"));
    if (ok) { setMedia(tr, r); addLabel(r.label); }
    bySeq.set(r.seq, tr);
    rows.prepend(tr);
    while (rows.children.length > MAX_ROWS) {
      bySeq.delete(Number(rows.lastElementChild.dataset.seq));
      rows.lastElementChild.remove();
    }
    applyFilter(tr);
  }

  function applyFilter(only) {
    const wanted = $("filter").value;
    for (const tr of only ? [only] : rows.children) tr.hidden = wanted !== "" && tr.dataset.label !== wanted;
    const shown = [...rows.children].filter((tr) => !tr.hidden).length;
    $("shown").textContent = `${shown} shown`;
    $("empty").hidden = rows.children.length > 0;
  }

  async function get(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function tick() {
    try {
      const [status, results] = await Promise.all([get("/api/status"), get(`/api/results?since=${next}`)]);
      lastContact = new Date();
      pollMs = 1000 * (status.poll_s || 2);
      showStatus(status);
      if (results.next < next) { rows.replaceChildren(); bySeq.clear(); }  // results.jsonl was replaced
      for (const record of results.results) addRow(record);
      next = results.next;
      for (const [seq, media] of Object.entries(results.media)) {
        const tr = bySeq.get(Number(seq));
        if (tr) setMedia(tr, media);
      }
      applyFilter();
    } catch (error) {
      lostContact();
    }
    setTimeout(tick, pollMs);
  }

  $("filter").addEventListener("change", () => applyFilter());
  tick();
})();
