// forumstats dashboard: polls /api/manifest, fetches the snapshots it names when they change,
// and draws everything with the DOM and SVG (text only through textContent, never as HTML).
"use strict";

(() => {
  const KINDS = ["series", "rolling", "trending", "open_windows", "distinct_users"];
  const PERIODS = { "5m": "5 minutes", "1h": "hour", "1d": "24 hours" };
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
    "#db2777"];
  const TOP_FORUMS = 15;
  const SVG = "http://www.w3.org/2000/svg";
  const numberFormat = new Intl.NumberFormat("en-US");

  const state = { keys: {}, docs: null, envelope: null, period: "1h", forum: forumFromHash(),
    refreshMs: 5000, timer: null };

  const $ = (id) => document.getElementById(id);
  const fmt = (n) => numberFormat.format(n);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function forumFromHash() {
    const match = /^#forum=(.*)$/.exec(window.location.hash);
    if (!match) return null;
    try { return decodeURIComponent(match[1]); } catch (e) { return null; }
  }

  // -- time and durations -------------------------------------------------------------------
  function utc(isoText, withDate) {
    if (!isoText) return "–";
    const d = new Date(isoText);
    const p = (n) => String(n).padStart(2, "0");
    const time = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
    if (!withDate) return time;
    return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${time}`;
  }

  function span(startIso, endIso) {
    if (!startIso || !endIso) return "no data in this period";
    const sameDay = startIso.slice(0, 10) === endIso.slice(0, 10);
    return `${utc(startIso, true)} – ${utc(endIso, !sameDay)} UTC`;
  }

  function human(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.floor(seconds);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function windowMs(label) {
    const match = /^(\d+)([smhd])$/.exec(label || "");
    if (!match) return 60000;
    return Number(match[1]) * { s: 1000, m: 60000, h: 3600000, d: 86400000 }[match[2]];
  }

  // -- polling --------------------------------------------------------------------------------
  async function tick() {
    try {
      const response = await fetch("/api/manifest", { cache: "no-store" });
      const envelope = await response.json();
      if (envelope.refresh_seconds) state.refreshMs = envelope.refresh_seconds * 1000;
      if (!response.ok) {
        showWaiting(envelope);
        return;
      }
      state.envelope = envelope;
      const names = envelope.manifest.snapshots || {};
      if (KINDS.some((kind) => state.keys[kind] !== names[kind])) {
        const docs = await fetchSnapshots(names);
        if (docs === null) {  // the manifest moved on between the two requests: ask again
          schedule(200);
          return;
        }
        state.docs = docs;
        state.keys = Object.fromEntries(KINDS.map((kind) => [kind, names[kind]]));
        renderData();
      }
      renderFreshness(envelope);
      document.body.dataset.snapshot = names.series || "";
      document.body.dataset.state = "ready";
    } catch (error) {
      showProblem(`Cannot load data from the dashboard server (${error.message}); ` +
        "retrying.");
      setFreshness("stale", "⚠ Stale: no fresh data from the dashboard server.");
    } finally {
      schedule(state.refreshMs);
    }
  }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, ms);
  }

  async function fetchSnapshots(names) {
    const docs = {};
    await Promise.all(KINDS.map(async (kind) => {
      if (!names[kind]) { docs[kind] = null; return; }
      const response = await fetch(`/api/snapshot/${encodeURIComponent(kind)}`,
        { cache: "no-cache" });
      if (!response.ok) throw new Error(`snapshot ${kind}: HTTP ${response.status}`);
      if (response.headers.get("X-Snapshot-Key") !== names[kind]) {
        docs[kind] = undefined;  // a newer manifest was read meanwhile
        return;
      }
      docs[kind] = await response.json();
    }));
    return KINDS.some((kind) => docs[kind] === undefined) ? null : docs;
  }

  // -- freshness ------------------------------------------------------------------------------
  function setFreshness(kind, text) {
    const box = $("freshness");
    box.className = `freshness ${kind}`;
    box.textContent = text;
    document.body.dataset.freshness = kind;
  }

  function showProblem(text) {
    const box = $("problem");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function showWaiting(envelope) {
    $("source").textContent = envelope.source ? envelope.source.url : "";
    if (state.envelope) {  // keep showing the last data, flagged
      showProblem(`${envelope.error} Showing the data read before.`);
      return;
    }
    setFreshness("info", `Waiting for data: ${envelope.error}`);
    document.body.dataset.state = "waiting";
  }

  function renderFreshness(envelope) {
    const f = envelope.freshness;
    const m = envelope.manifest;
    $("source").textContent = envelope.source.url;
    const made = `manifest made ${human(f.made_at_age_seconds)} ago`;
    if (f.state === "complete") {
      setFreshness("complete", `Input complete: every window is final (${made}).`);
    } else if (f.state === "live") {
      setFreshness("live", `Live: watermark ${human(f.watermark_age_seconds)} behind now ` +
        `(${human(f.lag_at_made_seconds)} behind when made; ${made}).`);
    } else if (f.state === "waiting") {
      setFreshness("info", `Waiting for the first events (${made}).`);
    } else {
      const mark = m.watermark ? ` Watermark ${utc(m.watermark, true)} UTC, ` +
        `${human(f.watermark_age_seconds)} behind now.` : "";
      const reason = /[.?!]$/.test(f.reason) ? f.reason : `${f.reason}.`;
      setFreshness("stale", `⚠ Stale data: ${reason}${mark}`);
    }
    const problem = envelope.source.error;
    showProblem(problem ? `${problem} Showing the data read at ` +
      `${utc(envelope.source.changed_at, true)} UTC.` : "");
    const openCount = state.docs && state.docs.open_windows ? state.docs.open_windows.rows.length
      : 0;
    const when = (isoText) => (isoText ? `${utc(isoText, true)} UTC` : "–");
    const finalThrough = m.ended ? "end of input" : when(m.windows && m.windows.final_through);
    $("footer").textContent = `Manifest made ${when(m.made_at)} · ` +
      `final through ${finalThrough} · ` +
      `${fmt(openCount)} open window rows · stale after ${human(f.stale_after_seconds)} · ` +
      `refresh every ${human(envelope.refresh_seconds)} · server time ` +
      `${utc(envelope.server_time, true)} UTC`;
  }

  // -- data -----------------------------------------------------------------------------------
  function renderData() {
    const docs = state.docs;
    renderTotals(docs.rolling);
    renderSeries(docs.series);
    renderForums(docs.rolling);
    renderForumPicker(docs.trending, docs.rolling);
    renderTrending(docs.trending);
    renderDistinct(docs.distinct_users);
  }

  function renderDistinct(doc) {
    const card = $("distinct-users");
    if (!doc) {
      card.classList.add("na");
      $("distinct-total").textContent = "not available";
      $("distinct-range").textContent = "This output has no distinct-user snapshot.";
      return;
    }
    card.classList.remove("na");
    $("distinct-total").textContent = fmt(doc.total);
    const forum = state.forum !== null && doc.forums[state.forum] !== undefined
      ? ` · ${state.forum}: ${fmt(doc.forums[state.forum])}` : "";
    $("distinct-range").textContent = `last hour, ${span(doc.start, doc.end)}; ` +
      `${fmt(doc.total_lower)}–${fmt(doc.total_upper)} (95 %)${forum}`;
  }

  function renderTotals(rolling) {
    for (const period of Object.keys(PERIODS)) {
      const doc = rolling && rolling[period];
      $(`total-${period}`).textContent = doc ? fmt(doc.total) : "–";
      $(`range-${period}`).textContent = doc ? span(doc.start, doc.end) : "not in the snapshot";
    }
  }

  function seriesByType(series) {
    const step = windowMs(series.window);
    const start = Date.parse(series.start);
    const end = Date.parse(series.end);
    const minutes = [];
    for (let t = start; t < end; t += step) minutes.push(t);
    const types = [...new Set(series.rows.map((r) => r.type))].sort();
    const counts = new Map(types.map((t) => [t, new Map()]));
    const open = new Set();
    for (const row of series.rows) {
      const t = Date.parse(row.minute);
      const byMinute = counts.get(row.type);
      byMinute.set(t, (byMinute.get(t) || 0) + row.count);
      if (!row.final) open.add(t);
    }
    return { minutes, types, counts, open, step };
  }

  function niceStep(peak, count) {
    const raw = Math.max(peak, 1) / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => raw <= s);
    return Math.max(1, step);
  }

  function renderSeries(series) {
    const chart = $("series-chart");
    const legend = $("series-legend");
    const table = $("series-table");
    chart.replaceChildren();
    legend.replaceChildren();
    table.replaceChildren();
    if (!series || !series.rows.length) {
      chart.append(el("p", { class: "empty" }, "No events in the last hour."));
      $("series-note").textContent = "";
      return;
    }
    const { minutes, types, counts, open, step } = seriesByType(series);
    const W = 860, H = 280, L = 56, R = 16, T = 12, B = 30;
    const peak = Math.max(...types.flatMap((t) => [...counts.get(t).values()]));
    const yStep = niceStep(peak, 5);
    const top = Math.max(yStep, Math.ceil(peak / yStep) * yStep);
    const x0 = minutes[0], x1 = minutes[minutes.length - 1] || x0;
    const x = (t) => L + (x1 === x0 ? 0 : (t - x0) / (x1 - x0)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": "Events per minute by type over the last hour" });
    for (let v = 0; v <= top; v += yStep) {
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      const label = svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
      label.textContent = fmt(v);
      root.append(label);
    }
    if (open.size) {
      const first = Math.min(...open);
      const band = svg("rect", { x: x(first) - 3, y: T, width: W - R - x(first) + 3,
        height: H - T - B, class: "open-band" });
      const title = svg("title");
      title.textContent = "open windows: counts can still grow";
      band.append(title);
      root.append(band);
    }
    const tickMs = Math.max(1, Math.round(600000 / step)) * step;  // about every 10 minutes
    minutes.forEach((t) => {
      if (t % tickMs !== 0) return;
      const label = svg("text", { x: x(t), y: H - 10, class: "axis", "text-anchor": "middle" });
      label.textContent = utc(new Date(t).toISOString());
      root.append(label);
    });
    types.forEach((type, i) => {
      const color = COLORS[i % COLORS.length];
      const byMinute = counts.get(type);
      const points = minutes.map((t) => `${x(t).toFixed(1)},${y(byMinute.get(t) || 0).toFixed(1)}`);
      root.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: color,
        "stroke-width": 2, "stroke-linejoin": "round", class: "line" }));
      for (const t of minutes) {
        const dot = svg("circle", { cx: x(t), cy: y(byMinute.get(t) || 0), r: 2.5, fill: color,
          class: open.has(t) ? "dot open" : "dot" });
        const title = svg("title");
        title.textContent = `${type} ${utc(new Date(t).toISOString())} UTC: ` +
          `${fmt(byMinute.get(t) || 0)}${open.has(t) ? " (open)" : ""}`;
        dot.append(title);
        root.append(dot);
      }
      const total = [...byMinute.values()].reduce((a, b) => a + b, 0);
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = color;
      legend.append(el("span", { class: "key", "data-type": type }, swatch, `${type} `,
        el("b", {}, fmt(total))));
    });
    chart.append(root);
    $("series-note").textContent = `${utc(series.start, true)} – ${utc(series.end, true)} UTC, ` +
      `${series.window} windows, all forums.` + (open.size ? " Shaded minutes are still open " +
      "and can grow." : " Every minute shown is final.");

    const head = el("tr", {}, el("th", {}, "minute (UTC)"),
      ...types.map((t) => el("th", { class: "n" }, t)), el("th", { class: "n" }, "total"));
    const body = el("tbody");
    for (const t of minutes) {
      const values = types.map((type) => counts.get(type).get(t) || 0);
      const row = el("tr", { "data-minute": new Date(t).toISOString() },
        el("td", {}, utc(new Date(t).toISOString(), true) + (open.has(t) ? " (open)" : "")),
        ...values.map((v, i) => el("td", { class: "n", "data-type": types[i] }, fmt(v))),
        el("td", { class: "n total" }, fmt(values.reduce((a, b) => a + b, 0))));
      body.append(row);
    }
    table.append(el("thead", {}, head), body);
  }

  function renderForums(rolling) {
    const list = $("forums");
    list.replaceChildren();
    for (const button of document.querySelectorAll("#forum-periods button")) {
      button.setAttribute("aria-pressed", String(button.dataset.period === state.period));
    }
    const doc = rolling && rolling[state.period];
    if (!doc) {
      $("forums-note").textContent = "No totals for this period in the snapshot.";
      return;
    }
    const ranked = Object.entries(doc.forums)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const shown = ranked.slice(0, TOP_FORUMS);
    const peak = shown.length ? shown[0][1] : 1;
    $("forums-note").textContent = `${fmt(ranked.length)} forums, ${fmt(doc.total)} events in ` +
      `the last ${PERIODS[state.period]} (${span(doc.start, doc.end)}). Pick one for its threads.`;
    for (const [forum, count] of shown) {
      const bar = el("span", { class: "bar" });
      bar.style.width = `${Math.max(1, (count / peak) * 100).toFixed(1)}%`;
      const name = el("button", { type: "button", class: "forum-link" }, forum);
      name.addEventListener("click", () => selectForum(forum));
      list.append(el("li", { "data-forum": forum, class: forum === state.forum ? "selected" : "" },
        name, el("span", { class: "track" }, bar), el("span", { class: "n count" }, fmt(count))));
    }
  }

  function renderForumPicker(trending, rolling) {
    const select = $("forum-select");
    const forums = Object.keys((trending && trending.forums) || {}).sort();
    const hourly = (rolling && rolling["1h"] && rolling["1h"].forums) || {};
    if (!forums.includes(state.forum)) {
      const busiest = forums.slice().sort((a, b) => (hourly[b] || 0) - (hourly[a] || 0));
      state.forum = busiest.length ? busiest[0] : null;
    }
    select.replaceChildren(...forums.map((f) => el("option", { value: f }, f)));
    if (state.forum !== null) select.value = state.forum;
  }

  function renderTrending(trending) {
    const body = $("trending").querySelector("tbody");
    body.replaceChildren();
    const rows = (trending && state.forum !== null && trending.forums[state.forum]) || [];
    $("trending-title").textContent = `Trending threads, last ${trending ? trending.period : "1h"}`;
    for (const row of rows) {
      body.append(el("tr", { "data-thread": row.thread }, el("td", {}, String(row.rank)),
        el("td", {}, row.thread), el("td", { class: "n count" }, fmt(row.count))));
    }
    $("trending").dataset.forum = state.forum || "";
    $("trending-note").textContent = state.forum === null ? "No forum has events in the last hour."
      : `Top ${fmt(rows.length)} of at most ${trending.k} threads in “${state.forum}”, exact ` +
        "counts of the last hour.";
  }

  function selectForum(forum) {
    state.forum = forum;
    history.replaceState(null, "", `#forum=${encodeURIComponent(forum)}`);
    if (!state.docs) return;
    $("forum-select").value = forum;
    renderForums(state.docs.rolling);
    renderTrending(state.docs.trending);
    renderDistinct(state.docs.distinct_users);
  }

  // -- wiring ---------------------------------------------------------------------------------
  $("forum-select").addEventListener("change", (event) => selectForum(event.target.value));
  window.addEventListener("hashchange", () => {
    const forum = forumFromHash();
    if (forum !== null && forum !== state.forum) selectForum(forum);
  });
  for (const button of document.querySelectorAll("#forum-periods button")) {
    button.addEventListener("click", () => {
      state.period = button.dataset.period;
      if (state.docs) renderForums(state.docs.rolling);
    });
  }
  tick();
})();
