// A call's SIP ladder: one column per participant (customer, softswitch, each vendor
// tried), one arrow per message in the order sent and read; a message opens below it.
// Every text here (first lines, whole messages, names) is set as text, never as HTML.

import { el, replace, time } from "./lib.js";

/** The ladder of GET /calls/ID/sip or /cdrs/ID/sip: {call, participants, messages, omitted}. */
export function ladderView(ladder) {
  const columns = ladder.participants;
  const index = new Map(columns.map((p, i) => [p.id, i]));
  const start = ladder.messages.length ? ladder.messages[0].at : ladder.call.start_at;
  const grid = el("div", { class: "ladder", id: "ladder", role: "list" });
  // Column widths come from the count of participants (CSSOM: allowed by the CSP).
  grid.style.gridTemplateColumns = `6em repeat(${columns.length}, minmax(10em, 1fr))`;
  const detail = el("div", { class: "ladder-detail", id: "ladder-detail" },
    el("p", { class: "muted" }, "Open a message to see it whole."));

  const place = (node, row, from, to = from) => {
    node.style.gridRow = String(row);
    node.style.gridColumn = `${from} / ${to + 1}`;
    return node;
  };
  columns.forEach((p, i) => grid.append(place(el("div", { class: ["ladder-head", p.role] },
    el("div", { class: "who" }, p.role === "softswitch" ? "softswitch" : (p.name || p.role)),
    el("div", { class: "small muted" }, p.role), p.address ? el("div", { class: "small mono" }, p.address) : null,
    p.outcome ? el("div", { class: "small" }, `${p.outcome}${p.final_code ? ` ${p.final_code}` : ""}`) : null),
  1, i + 2)));

  ladder.messages.forEach((m, k) => {
    const row = k + 2;
    grid.append(place(el("div", { class: "ladder-time mono small" }, `+${(m.at - start).toFixed(3)}`), row, 1));
    columns.forEach((_p, i) => grid.append(place(el("div", { class: "lifeline" }), row, i + 2)));
    const a = index.get(m.from) ?? 0;
    const b = index.get(m.to) ?? 0;
    const lo = Math.min(a, b);
    const span = Math.abs(a - b) + 1;
    const arrow = el("button", {
      type: "button", class: ["arrow", a <= b ? "right" : "left"], role: "listitem",
      dataset: { message: String(k) }, title: `${m.direction === "in" ? "from" : "to"} ${m.remote} (${m.transport})`,
      on: { click: () => open(k) },
    }, el("span", { class: "label mono" }, m.first_line));
    // From the middle of one column to the middle of the other.
    arrow.style.marginLeft = arrow.style.marginRight = `calc(100% / ${2 * span})`;
    grid.append(place(arrow, row, lo + 2, lo + span + 1));
  });

  function open(k) {
    const m = ladder.messages[k];
    for (const node of grid.querySelectorAll(".arrow.open")) node.classList.remove("open");
    grid.querySelector(`.arrow[data-message="${k}"]`)?.classList.add("open");
    replace(detail,
      el("div", { class: "small muted" },
        `${time(m.at)} · ${m.direction === "in" ? "received from" : "sent to"} ${m.remote} `
        + `(${m.transport}) on ${m.local} · ${m.size} bytes`),
      el("pre", { class: "sip-message", id: "sip-message" }, m.text));
  }

  return el("div", { class: "ladder-box" },
    ladder.omitted ? el("p", { class: "muted" }, `${ladder.omitted} messages not kept (the store's limits).`) : null,
    el("div", { class: "table-wrap" }, grid), detail);
}
