// Security: the policy's counters and the terminals suspended now; an admin lifts a
// suspension (docs/security.md).

import {
  api, button, confirmAction, dataTable, el, errorText, notice, qs, replace, session, time,
} from "../lib.js";

const COUNTERS = ["dropped", "rejected", "challenged", "authenticated", "suspended"];

export async function render(view) {
  const status = el("div", {});
  const tiles = el("div", { class: "tiles", id: "security-tiles" });
  view.append(el("h1", {}, "Security"), status, tiles, el("h2", {}, "Suspensions"));
  const table = dataTable({
    id: "suspensions", empty: "No terminal is suspended.",
    columns: [
      { key: "terminal", title: "Username" },
      { key: "source_ip", title: "Source IP" },
      { key: "kind", title: "Kind" },
      { key: "failures", title: "Failures" },
      { key: "since", title: "Since", value: (s) => time(s.since) },
      { key: "until", title: "Until", value: (s) => time(s.until) },
      { key: "node", title: "Node" },
    ],
    actions: session.canWrite ? (s) => [button("Lift", () => lift(s), "lift")] : null,
  });
  view.append(table.element);

  async function load() {
    try {
      const [{ data: stats }, { data: list }] = await Promise.all([
        api("GET", "/security/stats"), api("GET", "/suspensions")]);
      replace(tiles, COUNTERS.map((name) => {
        const total = Object.values(stats[name] || {}).reduce((a, b) => a + b, 0);
        return el("div", { class: "tile", title: Object.entries(stats[name] || {}).map(([k, v]) => `${k}: ${v}`).join("\n") },
          el("div", { class: "label" }, name), el("div", { class: "value" }, String(total)));
      }), el("div", { class: "tile" }, el("div", { class: "label" }, "suspended now"),
        el("div", { class: "value" }, String(stats.suspended_now))));
      table.setRows(list.items);
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }

  async function lift(s) {
    if (!confirmAction(`Lift the suspension of ${s.terminal} from ${s.source_ip}?`)) return;
    try {
      await api("DELETE", `/suspensions/${encodeURIComponent(s.terminal)}${qs({ source_ip: s.source_ip })}`);
      replace(status, notice(`Lifted the suspension of ${s.terminal}.`, "ok"));
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
    await load();
  }
  await load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
