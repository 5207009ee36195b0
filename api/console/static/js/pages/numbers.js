// Number rules: the number transform table, and the number groups (black/white lists)
// with their numbers (docs/numbers.md). Dial plans live on each gateway and phone.

import {
  api, button, confirmAction, el, errorText, messages, notice, qs, replace, session, time,
} from "../lib.js";
import { resourcePanel } from "../resource.js";

const PAGE = 1000;

export function render(view, ctx) {
  const tab = ctx.params.get("tab") === "groups" ? "groups" : "transforms";
  view.append(
    el("h1", {}, "Number rules"),
    el("div", { class: "tabs" },
      el("a", { href: "#/numbers?tab=transforms", class: tab === "transforms" ? "active" : null, id: "tab-transforms" },
        "Transform table"),
      el("a", { href: "#/numbers?tab=groups", class: tab === "groups" ? "active" : null, id: "tab-groups" },
        "Number groups (black/white lists)")),
  );
  const box = el("div", {});
  view.append(box);
  if (tab === "transforms") {
    box.append(el("p", { class: "muted" }, "A number equal to one on the left is replaced by the one "
      + "on the right, on the gateways and phones whose caller or callee transform is on."));
    resourcePanel(box, {
      path: "/number-transforms", schema: "NumberTransform", noun: "transform", key: "number",
      tableId: "transforms",
      columns: [
        { key: "number", title: "Number" },
        { key: "replacement", title: "Replacement" },
        { key: "memo", title: "Memo" },
        { key: "updated_at", title: "Changed", value: (r) => time(r.updated_at) },
      ],
    });
    return;
  }
  const numbersBox = el("div", {});
  box.append(el("p", { class: "muted" }, "Gateways name groups in caller_groups / callee_groups, "
    + "allowing or denying the numbers in them."));
  resourcePanel(box, {
    path: "/number-groups", schema: "NumberGroup", noun: "number group", tableId: "groups",
    columns: [
      { key: "id", title: "ID" },
      { key: "name", title: "Name" },
      { key: "memo", title: "Memo" },
      { key: "updated_at", title: "Changed", value: (r) => time(r.updated_at) },
    ],
    extraActions: (row) => [button("Numbers", () => showNumbers(numbersBox, row), "numbers")],
  });
  box.append(numbersBox);
}

async function showNumbers(box, group, message = null) {
  const list = el("ul", { class: "numbers mono" });
  const more = button("More", () => load(), "more");
  const status = el("div", {}, message ? notice(message, "ok") : null);
  let after = "";
  async function load() {
    try {
      const { data } = await api("GET", `/number-groups/${group.id}/numbers${qs({ after, limit: PAGE })}`);
      for (const number of data.items) list.append(el("li", {}, number));
      after = data.next_after;
      more.hidden = after === null;
      if (!list.children.length) list.append(el("li", { class: "muted" }, "No numbers in this group."));
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }
  const editor = session.canWrite ? bulkEditor(group, (done) => showNumbers(box, group, done)) : null;
  replace(box, el("div", { class: "panel", id: "group-numbers" },
    el("h2", {}, "Numbers of group ", el("span", { class: "item-name" }, group.name)),
    status, editor, list, more));
  await load();
}

function bulkEditor(group, refresh) {
  const area = el("textarea", { id: "bulk-numbers", placeholder: "one number per line (or separated by commas)" });
  const error = el("div", { class: "field-error" });
  const change = async (method) => {
    const numbers = area.value.split(/[\s,]+/).filter(Boolean);
    if (!numbers.length) return;
    if (method === "DELETE" && !confirmAction(`Remove ${numbers.length} number(s) from ${group.name}?`)) return;
    error.textContent = "";
    try {
      const { data } = await api(method, `/number-groups/${group.id}/numbers`, { numbers });
      await refresh(`${method === "POST" ? "Added" : "Removed"} ${data.changed}; the group has ${data.total}.`);
    } catch (err) {
      const lines = err.fields && err.fields.numbers ? messages(Object.values(err.fields.numbers))
        : [errorText(err)];
      error.textContent = lines.join("; ");
    }
  };
  return el("div", { class: "inline-form" }, area, error,
    button("Add numbers", () => change("POST"), "primary add-numbers"),
    button("Remove numbers", () => change("DELETE"), "danger remove-numbers"));
}
