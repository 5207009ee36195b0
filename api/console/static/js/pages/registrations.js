// Registrations: where phones and password-mode mapping gateways are registered from,
// live from the engine; an admin unregisters one contact.

import {
  api, button, confirmAction, dataTable, el, errorText, notice, qs, replace, session, text, time,
} from "../lib.js";

export async function render(view, ctx) {
  const status = el("div", {});
  view.append(el("h1", {}, "Registrations"), status);
  const table = dataTable({
    id: "registrations", placeholder: "Filter by username, source, User-Agent",
    empty: "Nothing is registered.",
    columns: [
      { key: "username", title: "Username" },
      { key: "kind", title: "Kind", value: (r) => (r.kind === "phone" ? "phone" : `gateway ${text(r.mapping_gateway)}`) },
      { key: "contact", title: "Contact", class: "mono" },
      { key: "source", title: "Source" },
      { key: "transport", title: "Transport" },
      { key: "nat", title: "NAT" },
      { key: "user_agent", title: "User-Agent", class: "user-agent" },
      { key: "registered_at", title: "Registered", value: (r) => time(r.registered_at) },
      { key: "expires_at", title: "Expires", value: (r) => time(r.expires_at) },
    ],
    actions: session.canWrite ? (r) => [button("Unregister", () => unregister(r), "danger unregister")] : null,
  });
  view.append(table.element);
  const wanted = ctx.params.get("username");
  if (wanted) table.filterBox.value = wanted;

  async function load() {
    try {
      const { data } = await api("GET", "/registrations");
      table.setRows(data.items);
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }

  async function unregister(r) {
    if (!confirmAction(`Unregister ${r.username} at ${r.contact}?`)) return;
    try {
      await api("DELETE", `/registrations/${encodeURIComponent(r.username)}${qs({ contact: r.contact })}`);
      replace(status, notice(`Unregistered ${r.username}.`, "ok"));
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
    await load();
  }
  await load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
