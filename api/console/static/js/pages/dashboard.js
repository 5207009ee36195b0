// Dashboard: calls up now and calls/s, ASR, ACD, PDD and NER over the last hour (overall
// and per gateway), and security events, updated every few seconds while open.
//
// Light on the engine: each refresh is one /stats and one /security/stats (engine
// snapshots it keeps anyway) and one /stats/gateways (the database's stored minutes).

import { lineChart } from "../charts.js";
import { api, el, errorText, notice, replace, text } from "../lib.js";
import { percent, seconds } from "../quality.js";

const REFRESH_MS = 5000;
const LIVE_POINTS = 120; // ten minutes at one point per 5 s
const SECURITY = ["dropped", "challenged", "suspended"];

function tile(label, id) {
  const value = el("div", { class: "tile-value", id }, "–");
  return { element: el("div", { class: "tile" }, el("div", { class: "tile-label" }, label), value), value };
}

const sum = (counts) => Object.values(counts || {}).reduce((a, b) => a + Number(b || 0), 0);

export async function render(view) {
  const status = el("div", {});
  const tiles = {
    active: tile("Calls up now", "tile-active"),
    cps: tile("Calls/s", "tile-cps"),
    asr: tile("ASR, last hour", "tile-asr"),
    acd: tile("ACD, last hour", "tile-acd"),
    pdd: tile("PDD median / p95", "tile-pdd"),
    ner: tile("NER, last hour", "tile-ner"),
  };
  const live = REFRESH_MS / 1000 * LIVE_POINTS;
  const load = lineChart({ title: "Calls up now and calls/s (since this page opened)", id: "chart-load", span: live,
    series: [{ label: "calls up" }, { label: "calls/s", scale: "cps", unit: "calls/s" }] });
  const quality = lineChart({ title: "ASR and NER per minute, last hour (customers' calls)", id: "chart-asr",
    ranges: { y: [0, 100] },
    series: [{ label: "ASR %", unit: "%" }, { label: "NER %" }] });
  const delay = lineChart({ title: "PDD per minute, last hour", id: "chart-pdd",
    series: [{ label: "median s", unit: "s" }, { label: "p95 s" }] });
  const security = lineChart({ title: "Security events per 5 s (since this page opened)", id: "chart-security", span: live,
    series: SECURITY.map((label) => ({ label })) });
  const perGateway = el("tbody");
  const table = el("table", { class: "data", id: "gateway-quality" },
    el("thead", {}, el("tr", {}, ["Kind", "Gateway", "Attempts", "Answered", "ASR", "ACD", "PDD median",
      "PDD p95", "NER", "Failures"].map((h) => el("th", {}, h)))), perGateway);
  view.append(
    el("h1", {}, "Dashboard"), status,
    el("div", { class: "tiles" }, Object.values(tiles).map((t) => t.element)),
    el("div", { class: "charts" }, load.element, quality.element, delay.element, security.element),
    el("div", { class: "panel" }, el("h2", {}, "Gateways, last hour"), el("div", { class: "table-wrap" }, table)),
  );

  let last = null; // the previous poll: time, attempts, security totals

  async function refresh() {
    const now = Date.now() / 1000;
    try {
      const [stats, sec, hour] = await Promise.all([
        api("GET", "/stats").then((r) => r.data),
        api("GET", "/security/stats").then((r) => r.data),
        api("GET", `/stats/gateways?from=${Math.floor(now - 3600)}&to=${now}&step=60`).then((r) => r.data),
      ]);
      const secTotals = SECURITY.map((k) => sum(sec[k]));
      const cps = last ? Math.max(0, (stats.attempts - last.attempts) / (now - last.at)) : null;
      const secDelta = last ? secTotals.map((v, i) => Math.max(0, v - last.security[i])) : SECURITY.map(() => null);
      last = { at: now, attempts: stats.attempts, security: secTotals };
      load.push(now, [stats.active, cps], LIVE_POINTS);
      security.push(now, secDelta, LIVE_POINTS);
      tiles.active.value.textContent = String(stats.active);
      tiles.cps.value.textContent = cps === null ? "…" : cps.toFixed(1);

      const overall = hour.totals.find((t) => t.kind === "mapping");
      const s = overall ? overall.summary : null;
      tiles.asr.value.textContent = s ? percent(s.asr) : "–";
      tiles.acd.value.textContent = s ? seconds(s.acd) : "–";
      tiles.pdd.value.textContent = s ? `${seconds(s.pdd_median)} / ${seconds(s.pdd_p95)}` : "–";
      tiles.ner.value.textContent = s ? percent(s.ner) : "–";
      const points = overall ? overall.points : [];
      const pct = (v) => (v === null || v === undefined ? null : Math.round(v * 1000) / 10);
      quality.set(points.map((p) => p.at), [points.map((p) => pct(p.asr)), points.map((p) => pct(p.ner))]);
      delay.set(points.map((p) => p.at), [points.map((p) => p.pdd_median), points.map((p) => p.pdd_p95)]);

      replace(perGateway, hour.series.length ? hour.series.map((g) => {
        const f = g.summary;
        const failures = Object.entries(f.failures).sort((a, b) => b[1] - a[1]).slice(0, 3)
          .map(([code, n]) => `${code}×${n}`).join(", ");
        return el("tr", {},
          el("td", {}, g.kind === "mapping" ? "customer" : "vendor"),
          el("td", { class: "name" }, text(g.name ?? `#${g.id}`)),
          el("td", {}, String(f.attempts)), el("td", {}, String(f.answered)),
          el("td", {}, percent(f.asr)), el("td", {}, seconds(f.acd)),
          el("td", {}, seconds(f.pdd_median)), el("td", {}, seconds(f.pdd_p95)),
          el("td", {}, percent(f.ner)), el("td", {}, failures || "–"));
      }) : el("tr", {}, el("td", { class: "empty", colspan: 10 }, "No calls in the last hour.")));
      table.dataset.loaded = "true";
      status.replaceChildren();
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  const onResize = () => [load, quality, delay, security].forEach((c) => c.resize());
  window.addEventListener("resize", onResize);
  return () => {
    clearInterval(timer);
    window.removeEventListener("resize", onResize);
  };
}
