// edgecxr status page. Polls this origin only; builds every element with textContent, never
// innerHTML, so a file name like <img src=x onerror=alert(1)>.png is shown as text.
"use strict";
(() => {
  const MAX_ROWS = 500;
  const NOT_ANALYSED_LISTED = 8;  // the panel lists the newest few; the table's filter shows them all
  const KIND = { out_of_scope: "outside intended use", refused: "could not be read", duplicate: "sent again" };
  const STAGE = { tags: "the image's DICOM header", pixels: "the pixel check (blank, exposure, noise)",
    learned: "the comparison with the training images" };
  const $ = (id) => document.getElementById(id);
  const rows = $("rows");
  const bySeq = new Map();  // seq -> { record, tr }
  const labels = new Set();
  let next = 0;
  let pollMs = 2000;
  let lastContact = null;
  let bundleRule = null;
  let viewing = null;  // the seq shown in the large view
  let opener = null;  // what had the focus before the large view opened: it gets it back

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

  function number(x) {  // a gate score's scale depends on the method: three significant figures, no exponent
    if (x === null || x === undefined) return "-";
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
  }

  const analysed = (r) => r.status === "ok";
  const pOf = (r) => (r.positive_class ? `P(${r.positive_class})` : "P");

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
    $("inbox-problem").hidden = !s.inbox_error;
    $("inbox-problem").textContent = s.inbox_error ? `Inbox problem: ${s.inbox_error}` : "";
    $("h-heartbeat").textContent = s.updated ? `${ago(s.age_s)} (${clock(s.updated)})` : "never";
    if (s.backlog === undefined || s.backlog === null) $("h-backlog").textContent = "-";
    else figure("h-backlog", `${s.backlog} ready`, `${s.waiting || 0} still being written`);
    $("h-processed").textContent = s.processed ?? "-";
    const unread = s.refused ?? 0;
    const outside = typeof s.out_of_scope === "number" ? s.out_of_scope : null;
    if (s.refused === undefined || s.refused === null) $("h-refused").textContent = "-";
    else if (outside === null) figure("h-refused", unread, "could not be read");
    else figure("h-refused", unread + outside, `${outside} outside intended use, ${unread} could not be read`);
    $("h-error").textContent = s.last_error || "none";
    $("h-disk").textContent = bytes(s.disk_free_bytes);
    $("h-bundle").textContent = s.bundle || "-";
    $("h-engine").textContent = s.backend ? `${s.backend}, ${s.precision}` : "-";
    $("h-reason").textContent = s.reason || "-";
    bundleRule = s.decision_rule;
    $("h-rule").textContent = s.decision_rule || "-";
    $("h-started").textContent = s.started ? clock(s.started) : "-";
    $("h-version").textContent = s.edgecxr || "-";
    showDrift(s.drift);
    showPacs(s.pacs || []);
    showDelivery(s.delivery || []);
  }

  function figure(id, big, small) {  // a count large, what it is made of small beneath
    $(id).replaceChildren(el("span", big, "big"), el("span", small, "small"));
  }

  function showDrift(drift) {
    const warnings = (drift && drift.warnings) || [];
    $("drift").hidden = warnings.length === 0;
    $("drift-warnings").replaceChildren(...warnings.map((w) => el("li", w)));
    $("drift-window").textContent = drift && drift.images !== null
      ? `Measured over the last ${drift.images} images (window of ${drift.window ?? "?"}).` : "";
    if (!drift) {
      $("h-drift").textContent = "not watched: the bundle records no validation figures, or this watcher predates drift watch";
      return;
    }
    const lines = (drift.checks || []).map((c) => c.message || Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", "));
    const head = `${lines.length} checks over the last ${drift.images ?? "?"} images; `
      + (warnings.length ? `${warnings.length} beyond what chance explains` : "none beyond what chance explains");
    $("h-drift").replaceChildren(el("div", head), ...lines.map((line) => el("div", line, "check")));
  }

  function showPacs(rows) {  // the C-ECHO check of each --send-sr destination, and its outbox counts
    const down = rows.filter((p) => p.reachable === false);
    $("pacs-alert").hidden = down.length === 0;
    $("pacs-problems").replaceChildren(...down.map((p) => el("li",
      `${p.destination}: ${p.last_error || "no answer"}` + (p.last_ok ? ` (last answered ${clock(p.last_ok)})` : ""))));
    if (!rows.length) {
      $("h-pacs").textContent = "not sending results to a PACS (no --send-sr)";
      return;
    }
    $("h-pacs").replaceChildren(...rows.map((p) => {
      const state = p.reachable === true ? `answering (${p.rtt_ms ?? "?"} ms)`
        : p.reachable === false ? `not answering: ${p.last_error || "no answer"}` : "not checked yet";
      const commit = p.committed || p.awaiting_commitment  // --send-commit: delivered means committed
        ? ` (committed ${p.committed ?? 0}, stored awaiting commitment ${p.awaiting_commitment ?? 0})` : "";
      const oldest = p.pending && p.oldest_pending_s !== null && p.oldest_pending_s !== undefined
        ? ` (oldest since ${ago(p.oldest_pending_s)})` : "";
      return el("div", `${p.destination}: ${state}; sent ${p.sent ?? "-"}${commit}, waiting ${p.pending ?? "-"}`
        + `${oldest}, refused ${p.failed ?? "-"}`, "check");
    }));
  }

  function showDelivery(stopped) {  // a builder or sender thread its supervisor gave up on
    $("delivery-alert").hidden = stopped.length === 0;
    $("delivery-problems").replaceChildren(...stopped.map((w) => el("li",
      `${w.name} stopped` + (w.restarts ? ` after ${w.restarts} restarts` : "") + (w.last_error ? `: ${w.last_error}` : ""))));
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
    const entry = bySeq.get(Number(tr.dataset.seq));
    if (entry) Object.assign(entry.record, { thumb: media.thumb || entry.record.thumb, map: media.map || entry.record.map });
    if (entry && viewing === Number(tr.dataset.seq)) fillViewer(entry.record);
  }

  function addLabel(label) {
    if (labels.has(label)) return;
    labels.add(label);
    const option = el("option", label);
    option.value = label;
    $("filter").append(option);
  }

  function openerButton(r, cls) {
    const button = el("button", null, cls);
    button.type = "button";
    button.append(el("span", r.path, "path"));
    button.title = "show the image and its explanation map large";
    return button;
  }

  function whyNotAnalysed(r, parent) {
    parent.append(el("div", r.reason, "reason"));
    if (r.fix) parent.append(el("div", `What to do: ${r.fix}`, "fix"));
  }

  function learnedScore(g) {
    return !!g && g.score !== null && g.score !== undefined && (!g.stage || g.stage === "learned");
  }

  function gateCell(r) {
    const cell = el("td", null, "gate");
    const g = r.gate;
    // the score column is the learned stage's: a tag or pixel refusal's number is another measure
    if (!learnedScore(g)) { cell.textContent = "-"; return cell; }
    const limited = g.threshold !== null && g.threshold !== undefined;
    cell.textContent = limited ? `${number(g.score)} (limit ${number(g.threshold)})` : number(g.score);
    if (limited && g.score >= g.threshold) cell.classList.add("over");
    return cell;
  }

  function addRow(r) {
    const ok = analysed(r);
    const tr = el("tr");
    tr.dataset.seq = r.seq;
    tr.dataset.status = r.status;
    tr.dataset.label = ok ? r.label : "not-analysed";
    tr.dataset.flagged = (r.flags || []).length ? "1" : "";
    tr.append(el("td", null, "media"));
    const file = el("td", null, "file");
    file.append(openerButton(r, "open"));
    if (!ok) whyNotAnalysed(r, file);
    tr.append(file);
    const result = el("td", null, "result");
    result.append(el("strong", ok ? r.label : "Not analysed"));
    if (!ok) result.append(el("span", KIND[r.status], "why"));
    tr.append(result);
    const p = el("td", ok && r.p_positive !== null ? r.p_positive.toFixed(3) : "-", "p");
    if (ok) p.title = [probabilities(r), r.decision || bundleRule].filter(Boolean).join("; ");
    tr.append(p);
    tr.append(gateCell(r));
    const notes = el("td", null, "notes");
    for (const flag of r.flags || []) notes.append(el("div", flag.reason, "flag"));
    tr.append(notes);
    tr.append(el("td", clock(r.completed_at), "time"));
    tr.addEventListener("click", () => openViewer(r.seq, tr.querySelector("button.open")));
    bySeq.set(r.seq, { record: r, tr });
    if (r.thumb !== undefined) setMedia(tr, r);
    if (ok) { addLabel(r.label); if (r.positive_class) $("p-head").textContent = pOf(r); }
    rows.prepend(tr);
    while (rows.children.length > MAX_ROWS) {
      bySeq.delete(Number(rows.lastElementChild.dataset.seq));
      rows.lastElementChild.remove();
    }
    applyFilter(tr);
  }

  function showNotAnalysed() {
    const all = [...bySeq.values()].map((e) => e.record).filter((r) => !analysed(r)).sort((a, b) => b.seq - a.seq);
    $("na-count").textContent = bySeq.size ? `${all.length} of the latest ${bySeq.size} images` : "";
    $("na-none").hidden = all.length > 0;
    $("na-none").textContent = bySeq.size ? "Every recent image was analysed." : "No images yet.";
    $("not-analysed").dataset.count = all.length;
    $("na-list").replaceChildren(...all.slice(0, NOT_ANALYSED_LISTED).map((r) => {
      const li = el("li");
      li.dataset.seq = r.seq;
      const button = openerButton(r, "open");
      button.addEventListener("click", () => openViewer(r.seq, button));
      li.append(button, el("span", ` ${KIND[r.status]}, ${clock(r.completed_at)}`, "why"));
      whyNotAnalysed(r, li);
      return li;
    }));
  }

  function applyFilter(only) {
    const wanted = $("filter").value;
    const show = (tr) => wanted === "" || (wanted === "flagged" ? tr.dataset.flagged === "1" : tr.dataset.label === wanted);
    for (const tr of only ? [only] : rows.children) tr.hidden = !show(tr);
    const shown = [...rows.children].filter((tr) => !tr.hidden).length;
    $("shown").textContent = `${shown} shown`;
    $("empty").hidden = rows.children.length > 0;
  }

  function picture(frame, src, alt, missing) {
    if (!src) { frame.replaceChildren(el("p", missing, "missing")); return; }
    const current = frame.querySelector("img");
    if (current && current.getAttribute("src") === src) return;
    const img = el("img");
    img.src = src;
    img.alt = alt;
    frame.replaceChildren(img);
  }

  function fact(dl, term, value, cls) {
    if (value === null || value === undefined || value === "") return;
    const div = el("div");
    div.append(el("dt", term), el("dd", value, cls));
    dl.append(div);
  }

  function fillViewer(r) {
    const ok = analysed(r);
    $("viewer").dataset.status = r.status;
    $("viewer-title").textContent = r.path;
    $("viewer-result").textContent = ok
      ? `${r.label}${r.p_positive !== null ? `, ${pOf(r)} ${r.p_positive.toFixed(3)}` : ""}`
      : `Not analysed: ${KIND[r.status]}. ${r.reason}`;
    picture($("viewer-image"), r.thumb, `what the model saw of ${r.path}`,
      r.status === "refused" ? "No picture: the file could not be read." : "No picture kept for this image.");
    picture($("viewer-map"), r.map, `explanation map of ${r.path}`,
      ok ? "No explanation map: the watcher makes them when started with --explain." : "No map: the image was not analysed.");
    $("viewer-map-caption").textContent = ok
      ? `Explanation map: coloured where covering that part lowered P(${r.label}); yellow lowered it most` : "Explanation map";
    const facts = $("viewer-facts");
    facts.replaceChildren();
    if (!ok) fact(facts, "What to do", r.fix || (r.status === "out_of_scope"
      ? "read this image without the classifier; it is not the kind of image the model was made for" : null));
    if (r.gate && r.gate.stage) fact(facts, "Refused by", STAGE[r.gate.stage] || r.gate.stage);
    for (const flag of r.flags || []) fact(facts, "Note", flag.reason, "flag");
    fact(facts, "Probabilities", ok ? probabilities(r) : null);
    fact(facts, "Decision rule", ok ? (r.decision || bundleRule) : null);
    if (learnedScore(r.gate)) {
      fact(facts, "Out-of-scope score", `${number(r.gate.score)}${r.gate.threshold !== null ? ` (limit ${number(r.gate.threshold)}; lower is more like the training images)` : ""}`);
    }
    fact(facts, "Engine", r.engine);
    fact(facts, "Time", clock(r.completed_at));
  }

  function openViewer(seq, from) {
    const entry = bySeq.get(seq);
    if (!entry) return;
    viewing = seq;
    opener = from || document.activeElement;
    fillViewer(entry.record);
    if (!$("viewer").open) $("viewer").showModal();  // modal: Escape closes it, focus stays inside
    $("viewer-close").focus();
  }

  $("viewer").addEventListener("close", () => {
    viewing = null;
    if (opener && opener.isConnected) opener.focus();
    opener = null;
  });
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("click", (event) => {  // a click on the backdrop (outside the box) closes it
    if (event.target === $("viewer")) $("viewer").close();
  });

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
        const entry = bySeq.get(Number(seq));
        if (entry) setMedia(entry.tr, media);
      }
      applyFilter();
      showNotAnalysed();
    } catch (error) {
      lostContact();
    }
    setTimeout(tick, pollMs);
  }

  $("filter").addEventListener("change", () => applyFilter());
  tick();
})();
