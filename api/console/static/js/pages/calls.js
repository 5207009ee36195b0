// Live calls: the calls up now (every node's, on a cluster), refreshed every few
// seconds; an admin can hang one up; any operator can open its SIP ladder.

import {
  api, button, confirmAction, dataTable, el, errorText, notice, qs, replace, session, text, time,
} from "../lib.js";
import { ladderView } from "../ladder.js";

const REFRESH_MS = 3000;

function since(unix) {
  if (!unix) return "–";
  const s = Math.max(0, Date.now() / 1000 - unix);
  return s < 60 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

async function showLadder(view, ctx) {
  const id = ctx.params.get("ladder");
  const node = ctx.params.get("node");
  view.append(el("h1", {}, `Call ${id}: SIP ladder`),
    el("p", {}, el("a", { href: "#/calls", id: "back" }, "← Live calls")));
  try {
    const { data } = await api("GET", `/calls/${encodeURIComponent(id)}/sip${qs({ node })}`);
    view.append(el("p", { class: "muted" },
      `${text(data.call.caller)} → ${text(data.call.callee)} · started ${time(data.call.start_at)} · ${data.call.state}`),
    ladderView(data));
  } catch (err) {
    view.append(notice(errorText(err), "error"));
  }
}

export async function render(view, ctx) {
  if (ctx.params.get("ladder")) return showLadder(view, ctx);
  const status = el("div", {});
  const table = dataTable({
    id: "live-calls", empty: "No call is up now.",
    columns: [
      { key: "id", title: "ID" },
      { key: "state", title: "State" },
      { key: "caller", title: "Caller", class: "mono" },
      { key: "caller_name", title: "Name", class: "caller-name" },
      { key: "callee", title: "Callee", class: "mono" },
      { key: "user_agent", title: "User-Agent", class: "user-agent small" },
      { key: "origin", title: "From", value: (c) => text(c.mapping_gateway || c.phone || c.source) },
      { key: "routing_gateway", title: "Vendor", value: (c) => text(c.routing_gateway || c.callee_phone) },
      { key: "attempts", title: "Attempts" },
      { key: "start_at", title: "Started", value: (c) => time(c.start_at) },
      { key: "answer_at", title: "Talking", value: (c) => (c.answer_at ? since(c.answer_at) : "–") },
      { key: "node", title: "Node" },
    ],
    actions: (c) => [
      el("a", { href: `#/calls?${new URLSearchParams({ ladder: c.id, ...(c.node ? { node: c.node } : {}) })}`,
        class: "button", dataset: { ladder: String(c.id) } }, "Ladder"),
      session.canWrite ? button("Hang up", () => hangUp(c), "danger hangup") : null,
    ],
  });
  view.append(el("h1", {}, "Live calls"), status, table.element);

  async function hangUp(call) {
    if (!confirmAction(`Hang up call ${call.id} (${call.caller} → ${call.callee})? Both legs get a BYE.`)) return;
    try {
      await api("DELETE", `/calls/${call.id}${qs({ node: call.node })}`);
      replace(status, notice(`Call ${call.id} hung up.`, "ok"));
      await refresh();
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }

  async function refresh() {
    try {
      const { data } = await api("GET", "/calls");
      table.setRows(data.items);
      if (data.unreachable && data.unreachable.length) {
        replace(status, notice(`Not answering (their calls are missing): ${data.unreachable.join(", ")}`, "error"));
      }
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
