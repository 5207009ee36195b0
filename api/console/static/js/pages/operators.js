// Operators: the console's accounts (admins only): add, change role or password,
// unlock after a lock-out, remove. Tokens for scripts stay `softswitch token create`.

import {
  api, button, confirmAction, dataTable, el, errorText, form, notice, replace, session, time,
} from "../lib.js";

const ROLE = { name: "role", label: "role", type: "select", options: [["admin", "admin: read and change"], ["read", "read: only read"]] };

export async function render(view) {
  const status = el("div", {});
  const editor = el("div", {});
  view.append(el("h1", {}, "Operators"),
    el("p", { class: "muted" }, "Five failed sign-ins in a row lock an account for 15 minutes, "
      + "or until an admin unlocks it here. A new password or role ends the account's sessions."),
    el("div", { class: "toolbar" }, button("New operator", () => create(), "primary new")),
    status, editor);
  const table = dataTable({
    id: "operators",
    columns: [
      { key: "name", title: "Name" },
      { key: "role", title: "Role" },
      { key: "locked_until", title: "Locked until", value: (o) => (o.locked_until ? time(o.locked_until) : "–") },
      { key: "failures", title: "Failures" },
      { key: "last_sign_in_at", title: "Last sign-in", value: (o) => time(o.last_sign_in_at) },
      { key: "created_at", title: "Created", value: (o) => time(o.created_at) },
    ],
    actions: (o) => [
      o.locked_until ? button("Unlock", () => unlock(o), "unlock") : null,
      button("Change", () => change(o), "edit"),
      o.name !== session.name ? button("Remove", () => remove(o), "danger delete") : null,
    ],
  });
  view.append(table.element);
  const say = (m, kind = "ok") => replace(status, notice(m, kind));

  async function load() {
    try {
      table.setRows((await api("GET", "/operators")).data.items);
    } catch (err) {
      say(errorText(err), "error");
    }
  }

  function create() {
    const f = form({
      id: "operator-form", submitLabel: "Add operator", onCancel: () => editor.replaceChildren(),
      values: { role: "read" },
      fields: [{ name: "name", label: "name", type: "text", help: "1-64 of A-Z a-z 0-9 . _ @ -" }, ROLE,
        { name: "password", label: "password", type: "password", help: "at least 10 characters" }],
      onSubmit: async (data) => {
        await api("POST", "/operators", data);
        editor.replaceChildren();
        say(`Added ${data.name}.`);
        await load();
      },
    });
    replace(editor, el("div", { class: "panel" }, el("h2", {}, "New operator"), f.element));
  }

  function change(o) {
    const f = form({
      id: "operator-form", submitLabel: "Save", onCancel: () => editor.replaceChildren(), values: o,
      fields: [ROLE, { name: "password", label: "new password", type: "password", keepPlaceholder: "unchanged unless typed" }],
      onSubmit: async (_all, changed) => {
        if (!Object.keys(changed).length) { editor.replaceChildren(); return; }
        await api("PATCH", `/operators/${encodeURIComponent(o.name)}`, changed);
        editor.replaceChildren();
        say(`Changed ${o.name}; their sessions have ended.`);
        await load();
      },
    });
    replace(editor, el("div", { class: "panel" }, el("h2", {}, "Change ", el("span", { class: "item-name" }, o.name)), f.element));
  }

  async function unlock(o) {
    try {
      await api("POST", `/operators/${encodeURIComponent(o.name)}/unlock`);
      say(`Unlocked ${o.name}.`);
    } catch (err) {
      say(errorText(err), "error");
    }
    await load();
  }

  async function remove(o) {
    if (!confirmAction(`Remove operator ${o.name}?`)) return;
    try {
      await api("DELETE", `/operators/${encodeURIComponent(o.name)}`);
      say(`Removed ${o.name}.`);
    } catch (err) {
      say(errorText(err), "error");
    }
    await load();
  }
  await load();
}
