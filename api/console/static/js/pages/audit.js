// Audit: every configuration change and console sign-in, newest first, with filters.

import {
  api, button, dataTable, el, errorText, notice, qs, replace, time,
} from "../lib.js";

const PAGE = 100;

/** What was written, compact: "name: \"x\", capacity: 30". */
function detailText(detail) {
  if (detail === null || detail === undefined) return "–";
  if (typeof detail !== "object" || Array.isArray(detail)) return JSON.stringify(detail);
  return Object.entries(detail).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ");
}

export async function render(view, ctx) {
  const status = el("div", {});
  const actor = el("input", { type: "text", id: "audit-actor", placeholder: "actor (exact): operator:NAME, token:NAME" });
  const action = el("select", { id: "audit-action" }, ["", "create", "update", "delete", "add", "remove",
    "sign-in", "sign-out", "lock", "unlock", "hangup"].map((a) => el("option", { value: a }, a || "any action")));
  const resource = el("input", { type: "text", id: "audit-resource", placeholder: "resource prefix: routing-gateways/3" });
  actor.value = ctx.params.get("actor") || "";
  resource.value = ctx.params.get("resource") || "";
  const older = button("Older", () => load(true), "older");
  view.append(el("h1", {}, "Audit log"), status,
    el("form", { class: "toolbar", id: "audit-filters", on: { submit: (e) => { e.preventDefault(); load(false); } } },
      actor, action, resource, el("button", { type: "submit", class: "primary" }, "Search")));
  const table = dataTable({
    id: "audit", empty: "No entry matches.", placeholder: "Filter these rows",
    columns: [
      { key: "id", title: "ID" },
      { key: "at", title: "When", value: (r) => time(r.at) },
      { key: "actor", title: "Actor" },
      { key: "action", title: "Action" },
      { key: "resource", title: "Resource", class: "mono" },
      {
        key: "detail", title: "Detail",
        render: (r) => el("div", { class: "detail mono" }, detailText(r.detail)),
        value: (r) => detailText(r.detail),
      },
    ],
  });
  view.append(table.element, el("div", { class: "toolbar" }, older));
  let rows = [];

  async function load(more) {
    const before = more && rows.length ? rows[rows.length - 1].id : null;
    try {
      const { data } = await api("GET", `/audit${qs({
        tail: PAGE, before_id: before, actor: actor.value.trim(), action: action.value,
        resource: resource.value.trim(),
      })}`);
      const page = data.items.reverse();
      rows = more ? rows.concat(page) : page;
      older.hidden = page.length < PAGE;
      table.setRows(rows);
      status.replaceChildren();
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }
  await load(false);
}
