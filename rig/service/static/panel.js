/* The operator panel's only script: the live run page (event stream -> uPlot charts, steps,
   measurements, operator dialogs, Abort) and the trend charts. Everything else is server-rendered
   HTML with htmx. window.__panel exposes counters the browser tests and the latency benchmark read. */
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  window.__panel = { events: 0, pointsDrawn: 0, latencies: [], outcome: null, safeState: null };

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await r.json(); } catch (e) { /* empty body */ }
    return { ok: r.ok, status: r.status, data };
  }

  function dur(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  const num = (v) => (v === null || v === undefined) ? "" : (typeof v === "number" ? Number(v.toPrecision(5)).toString() : String(v));
  function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }

  const MARKER_COLOURS = { fault: "#b3261e", alarm: "#8a5a00", pump_alarm: "#8a5a00", detector: "#6a1b9a", interlock: "#c62828", abort: "#000" };

  function markerPlugin(markers) {
    return { hooks: { draw: [(u) => {
      const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      ctx.save();
      ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
      for (const m of markers) {
        if (m.t === null || m.t === undefined) continue;
        const x = Math.round(u.valToPos(m.t, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.strokeStyle = ctx.fillStyle = MARKER_COLOURS[m.kind] || "#333";
        ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
        ctx.fillText(m.kind, x + 3, top + 12 * devicePixelRatio);
      }
      ctx.restore();
    }] } };
  }

  function chart(container, labels, colours, markers, extraSeries) {
    const width = Math.max(300, container.clientWidth - 4);
    const series = [{ label: "t (s)" }].concat(labels.map((l, i) => ({ label: l, stroke: colours[i], width: 1.5 })));
    const opts = {
      width, height: 220, series, plugins: [markerPlugin(markers)],
      scales: { x: { time: false } }, legend: { live: true },
      axes: [{ label: "procedure time (s)" }, {}],
    };
    if (extraSeries) extraSeries(opts);
    const data = [[]].concat(labels.map(() => []));
    const u = new uPlot(opts, data, container);
    new ResizeObserver(() => u.setSize({ width: Math.max(300, container.clientWidth - 4), height: 220 })).observe(container);
    return u;
  }

  function live(root) {
    const job = root.dataset.job;
    const markers = [];
    const P = { t: [], up: [], down: [], flow: [] }, B = { t: [], m: [] };
    const pressure = chart(document.getElementById("plot-pressure"), ["upstream", "downstream"],
      ["#1a56db", "#13795b"], markers);
    const flow = chart(document.getElementById("plot-flow"), ["flow sensor"], ["#6a1b9a"], markers);
    const balance = chart(document.getElementById("plot-balance"), ["mass"], ["#8a5a00"], markers);
    let dirty = false, pendingAt = [];
    function draw() {
      dirty = false;
      pressure.setData([P.t, P.up, P.down]);
      flow.setData([P.t, P.flow]);
      balance.setData([B.t, B.m]);
      const arrived = pendingAt; pendingAt = [];
      const drawn = P.t.length;
      requestAnimationFrame(() => {  // the frame after setData: the points are on screen
        const now = Date.now();
        for (const a of arrived) window.__panel.latencies.push(now - a);
        window.__panel.pointsDrawn = drawn;
      });
    }
    const schedule = () => { if (!dirty) { dirty = true; requestAnimationFrame(draw); } };

    const $ = (id) => document.getElementById(id);
    const steps = $("steps"), events = $("events"), measurements = $("measurements");
    const abortBtn = $("abort"), abortState = $("abort-state");
    const dialog = $("prompt");
    let asked = null, runId = root.dataset.run;

    function setState(summary) {
      $("state").textContent = summary.state;
      if (summary.outcome) { const o = $("outcome"); o.textContent = summary.outcome; o.className = "outcome " + summary.outcome; }
      if (summary.reason) $("reason").textContent = summary.reason;
      if (summary.state === "finished" || summary.state === "cancelled") {
        abortBtn.disabled = true;
        window.__panel.outcome = summary.outcome;
        if (summary.run_id && summary.kind === "run") showRunLink(summary.run_id);
      }
    }
    function showRunLink(id) {
      const box = $("report-link");
      if (box.firstChild) return;
      const a = el("a", "Finished run: report, signatures, verify →"); a.href = "/runs/" + id; a.dataset.testid = "run-link";
      box.appendChild(a);
    }
    function addEvent(text, marker) { const li = el("li", text, marker ? "marker" : ""); events.appendChild(li); events.scrollTop = events.scrollHeight; }

    function openPrompt(ev) {
      asked = ev;
      $("prompt-text").textContent = ev.prompt;
      const img = $("prompt-image");
      if (ev.image) { img.src = "/procedure-images/" + encodeURIComponent(ev.image); img.alt = ev.prompt; img.hidden = false; } else { img.hidden = true; }
      $("prompt-error").textContent = "";
      const entry = ev.kind === "entry";
      $("prompt-entry").hidden = !entry;
      $("prompt-input").value = "";
      $("prompt-hint").textContent = entry && ev.example ? "e.g. " + ev.example : "";
      $("prompt-ok").hidden = ev.kind === "confirm";
      $("prompt-ok").textContent = entry ? "OK" : "Done";
      $("prompt-yes").hidden = $("prompt-no").hidden = ev.kind !== "confirm";
      if (!dialog.open) dialog.showModal();
      (entry ? $("prompt-input") : (ev.kind === "confirm" ? $("prompt-yes") : $("prompt-ok"))).focus();
    }
    $("prompt-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!asked) return;
      const button = e.submitter ? e.submitter.value : "ok";
      const answer = asked.kind === "entry" ? $("prompt-input").value : (asked.kind === "confirm" ? button : "done");
      const r = await post(`/api/jobs/${job}/answer`, { step: asked.step, answer });
      if (!r.ok) { $("prompt-error").textContent = r.data.error || ("refused (" + r.status + ")"); return; }
      asked = null; dialog.close();
    });
    dialog.addEventListener("cancel", (e) => e.preventDefault());  // Esc does not skip a step

    abortBtn.addEventListener("click", async () => {
      abortBtn.disabled = true;
      abortState.hidden = false;
      abortState.textContent = "Abort requested — putting the bench in its safe state…";
      const r = await post(`/api/jobs/${job}/abort`);
      if (!r.ok) { abortState.textContent = "Abort refused: " + (r.data.error || r.status); abortBtn.disabled = false; }
    });

    function showSafe(ev) {
      window.__panel.safeState = ev;
      const box = $("safe-state"); box.hidden = false;
      box.classList.toggle("unconfirmed", !ev.confirmed);
      $("safe-summary").textContent = ev.confirmed ? "Confirmed: every instrument read back in its safe state." : "NOT confirmed: " + (ev.error || "");
      const rows = $("safe-rows"); rows.textContent = "";
      for (const [name, state] of Object.entries(ev.instruments || {})) {
        const tr = el("tr"); tr.appendChild(el("td", name));
        tr.appendChild(el("td", typeof state === "object" ? Object.entries(state).map(([k, v]) => `${k}: ${v}`).join(", ") : String(state)));
        rows.appendChild(tr);
      }
      if (!abortState.hidden) abortState.textContent = ev.confirmed ? "Aborted. Bench in its safe state (read back) — see below." : "Aborted, but the safe state was NOT confirmed — check the bench.";
    }

    function handle(ev) {
      window.__panel.events += 1;
      switch (ev.type) {
        case "job": if (ev.summary && ev.summary.id === job) setState(ev.summary); break;
        case "job_done": setState(ev.summary); break;
        case "run_start":
          runId = ev.run_id; steps.textContent = "";
          ev.steps.forEach((s, i) => { const li = el("li", s.name); li.id = "step-" + i; steps.appendChild(li); });
          break;
        case "step": {
          const li = document.getElementById("step-" + ev.index);
          if (li) { li.className = ev.status; li.textContent = `${ev.name} — ${ev.status}`; }
          if (ev.status === "started") $("step").textContent = `${ev.index + 1}. ${ev.name}`;
          break;
        }
        case "tick": {
          $("progress").value = ev.progress || 0;
          $("elapsed").textContent = dur(ev.t_proc_s) + " procedure";
          $("remaining").textContent = dur(ev.remaining_proc_s) + " procedure, ~" + dur(ev.remaining_wall_s) + " wall";
          const tbody = $("live-values"); tbody.textContent = "";
          for (const [name, v] of Object.entries(ev.live || {})) {
            const tr = el("tr", undefined, v.in_limits ? "" : "bad");
            tr.appendChild(el("td", name)); tr.appendChild(el("td", `${num(v.value)} ${v.unit}`));
            tbody.appendChild(tr);
          }
          break;
        }
        case "points": {  // arrays: one element per DAQ chunk (virtual time sends many chunks per event)
          const n = ev.t.length, at = (a, i) => (a ? a[i] : null);
          for (let i = 0; i < n; i++) {
            P.t.push(ev.t[i]); P.up.push(at(ev.p_up_kpa, i)); P.down.push(at(ev.p_down_kpa, i)); P.flow.push(at(ev.flow_ul_min, i));
          }
          pendingAt.push(ev.at_ms); schedule(); break;
        }
        case "balance": for (let i = 0; i < ev.t.length; i++) { B.t.push(ev.t[i]); B.m.push(ev.mass_g[i]); } schedule(); break;
        case "measurement": {
          const tr = el("tr");
          const outcome = String(ev.outcome || "").toUpperCase();
          [ev.name, `${num(ev.value)} ${ev.unit || ""}`, num(ev.uncertainty), `${num(ev.low)} .. ${num(ev.high)}`].forEach((t) => tr.appendChild(el("td", t)));
          const td = el("td"); td.appendChild(el("span", outcome, "outcome " + outcome)); tr.appendChild(td);
          measurements.appendChild(tr); break;
        }
        case "event":
          addEvent(`t=${num(ev.t_proc_s)} s ${ev.kind}: ${ev.detail}`, ev.marker);
          if (ev.marker) { markers.push({ t: ev.t_proc_s, kind: ev.kind }); schedule(); }
          break;
        case "message": case "line": addEvent(ev.text, false); break;
        case "prompt": openPrompt(ev); break;
        case "prompt_answered":
          addEvent(`operator step ${ev.step}: ${ev.answer} (answered by ${ev.answered_by})`, false);
          if (asked && asked.step === ev.step) { asked = null; if (dialog.open) dialog.close(); }
          break;
        case "outcome": setState({ state: $("state").textContent, outcome: ev.outcome, reason: ev.reason }); break;
        case "safe_state": showSafe(ev); break;
        case "report": if (runId) showRunLink(runId); break;
      }
    }
    const source = new EventSource(`/api/events?job=${encodeURIComponent(job)}`);
    source.onmessage = (m) => { try { handle(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  }

  function trends() {
    document.querySelectorAll("[data-trend]").forEach((box) => {
      const t = JSON.parse(box.dataset.trend);
      const x = t.values.map((_, i) => i + 1);
      const labels = ["value"], data = [x, t.values.map((v) => v ?? null)];
      const colours = ["#1a56db"];
      if (t.low !== null) { labels.push("low limit"); data.push(x.map(() => t.low)); colours.push("#c62828"); }
      if (t.high !== null) { labels.push("high limit"); data.push(x.map(() => t.high)); colours.push("#c62828"); }
      const series = [{ label: "run" }].concat(labels.map((l, i) => ({ label: l, stroke: colours[i], width: 1.5, points: { show: i === 0 } })));
      new uPlot({ width: Math.max(300, box.clientWidth - 4), height: 160, series, scales: { x: { time: false } } }, data, box);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("live");
    if (root) live(root);
    trends();
  });
})();
