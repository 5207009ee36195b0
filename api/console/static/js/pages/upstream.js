// Upstream: the softswitch's own registrations to vendors (docs/upstream-registration.md):
// their live state, and each routing gateway's registration settings.

import {
  api, button, confirmAction, dataTable, el, errorText, fieldsFromSchema, form, getAll, notice,
  replace, schemaOf, session, text, time,
} from "../lib.js";

export async function render(view) {
  const status = el("div", {});
  const editor = el("div", {});
  view.append(el("h1", {}, "Upstream registrations"), status);
  const table = dataTable({
    id: "upstream", empty: "The softswitch registers to no vendor.",
    columns: [
      { key: "routing_gateway", title: "Routing gateway" },
      { key: "registrar", title: "Registrar" },
      { key: "username", title: "Username" },
      { key: "state", title: "State" },
      { key: "last_code", title: "Last code" },
      { key: "reason", title: "Reason" },
      { key: "registered_at", title: "Registered", value: (r) => time(r.registered_at) },
      { key: "expires_at", title: "Expires", value: (r) => time(r.expires_at) },
      { key: "refreshes", title: "Refreshes" },
    ],
  });
  view.append(table.element, el("h2", {}, "Settings per routing gateway"));

  const picker = el("select", { id: "upstream-gateway" }, el("option", { value: "" }, "choose a routing gateway"));
  picker.addEventListener("change", () => open(picker.value));
  view.append(el("div", { class: "toolbar" }, picker), editor);

  async function load() {
    try {
      const { data } = await api("GET", "/upstream-registrations");
      table.setRows(data.items);
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }

  async function open(id) {
    editor.replaceChildren();
    if (!id) return;
    let current = null;
    try {
      current = (await api("GET", `/routing-gateways/${id}/registration`)).data;
    } catch (err) {
      if (err.status !== 404) { replace(editor, notice(errorText(err), "error")); return; }
    }
    const schema = await schemaOf("UpstreamRegistration");
    const fields = fieldsFromSchema(schema);
    for (const f of fields) if (f.type === "password") f.keepPlaceholder = current ? "unchanged unless typed" : "";
    const f = form({
      fields, values: current || {}, readOnly: !session.canWrite, id: "upstream-form",
      submitLabel: current ? "Save" : "Register to this vendor",
      onSubmit: async (data) => {
        await api("PUT", `/routing-gateways/${id}/registration`, data);
        replace(status, notice("Saved: the registration acts at once.", "ok"));
        await open(id);
        await load();
      },
    });
    const remove = current && session.canWrite ? button("Remove registration", async () => {
      if (!confirmAction("Remove this registration (the softswitch unregisters)?")) return;
      try {
        await api("DELETE", `/routing-gateways/${id}/registration`);
        replace(status, notice("Removed.", "ok"));
        await open(id);
        await load();
      } catch (err) {
        replace(status, notice(errorText(err), "error"));
      }
    }, "danger") : null;
    replace(editor, el("div", { class: "panel" },
      el("p", { class: "muted" }, current ? `Last changed ${time(current.updated_at)}.` : "Not registering to this vendor."),
      f.element, remove));
  }

  try {
    for (const gw of await getAll("/routing-gateways")) {
      picker.append(el("option", { value: String(gw.id) }, `${gw.name} (${text(gw.host)})`));
    }
  } catch (err) {
    replace(status, notice(errorText(err), "error"));
  }
  await load();
  const timer = setInterval(load, 10000);
  return () => clearInterval(timer);
}
