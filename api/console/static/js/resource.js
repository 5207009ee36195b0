// A list-and-edit panel for one REST "Resource" (api/resources.py): gateways, phones,
// number transforms, number groups. Lists every item with a filter box; an admin gets
// New, Edit, Enable/Disable and Delete. Every change sends If-Match with the ETag the
// API gave, so a change made meanwhile by someone else is refused (412), not overwritten.

import {
  ApiError, api, button, confirmAction, dataTable, el, errorText, fieldsFromSchema, form,
  getAll, notice, replace, schemaOf, session,
} from "./lib.js";

/**
 * resourcePanel(container, {
 *   path: "/mapping-gateways", schema: "MappingGateway", noun: "mapping gateway",
 *   columns: [...dataTable columns], key: "name" (what names an item to a person),
 *   main: [field names shown first], skip: [field names never shown],
 *   labels: {field: label}, extraActions(row, panel) -> [nodes],
 * }) -> {reload(), edit(id), create()}
 */
export function resourcePanel(container, options) {
  const { path, noun, columns, key = "name" } = options;
  const status = el("div", { class: "status" });
  const editor = el("div", { class: "editor" });
  const listing = el("div", {});
  const newButton = session.canWrite
    ? button(`New ${noun}`, () => create(), "primary new") : null;
  container.append(el("div", { class: "toolbar" }, newButton), status, editor, listing);

  let schema = null;
  const specs = async () => {
    schema = schema || await schemaOf(options.schema);
    const mainNames = options.main || Object.keys(schema.properties);
    const main = fieldsFromSchema(schema, { only: mainNames, labels: options.labels });
    const more = fieldsFromSchema(schema, {
      skip: [...mainNames, ...(options.skip || [])], labels: options.labels,
    });
    return { main, more };
  };

  const say = (message, kind = "ok") => replace(status, message ? notice(message, kind) : null);

  const table = dataTable({
    columns, empty: `No ${noun} yet.`, id: options.tableId,
    actions: (row) => [
      ...(options.extraActions ? options.extraActions(row, panel) : []),
      session.canWrite ? button("Edit", () => edit(row.id), "edit") : button("Show", () => edit(row.id), "show"),
      session.canWrite && "enabled" in row
        ? button(row.enabled ? "Disable" : "Enable", () => toggle(row), "toggle") : null,
      session.canWrite ? button("Delete", () => remove(row), "danger delete") : null,
    ],
  });
  listing.append(table.element);

  async function reload() {
    try {
      table.setRows(await getAll(path));
    } catch (err) {
      say(errorText(err), "error");
    }
  }

  function close() { editor.replaceChildren(); }

  async function create() {
    say(null);
    const { main, more } = await specs();
    const f = form({
      fields: main, more, values: {}, submitLabel: `Create ${noun}`, id: "resource-form",
      onCancel: close,
      onSubmit: async (data) => {
        const { data: made } = await api("POST", path, data);
        close();
        say(`Created ${noun} ${made[key]}.`);
        await reload();
      },
    });
    replace(editor, el("div", { class: "panel" }, el("h2", {}, `New ${noun}`), f.element));
    f.element.querySelector("input, select")?.focus();
  }

  async function edit(id) {
    say(null);
    let item;
    try {
      item = await api("GET", `${path}/${id}`);
    } catch (err) {
      say(errorText(err), "error");
      return;
    }
    const { main, more } = await specs();
    const readOnly = !session.canWrite;
    for (const spec of [...main, ...more]) {
      if (spec.type === "password") spec.keepPlaceholder = "unchanged unless typed";
    }
    const f = form({
      fields: main, more, values: item.data, readOnly, submitLabel: "Save", id: "resource-form",
      onCancel: close,
      onReload: () => edit(id),
      onSubmit: async (_all, changed) => {
        if (!Object.keys(changed).length) { close(); say("Nothing changed.", "info"); return; }
        await api("PATCH", `${path}/${id}`, changed, { etag: item.etag });
        close();
        say(`Saved ${noun} ${item.data[key]}.`);
        await reload();
      },
    });
    replace(editor, el("div", { class: "panel" },
      el("h2", {}, `${readOnly ? "" : "Edit "}${noun} `, el("span", { class: "item-name" }, item.data[key])),
      f.element));
  }

  /** Reads the item again with its ETag; refuses when it changed since the list. */
  async function fresh(row) {
    const item = await api("GET", `${path}/${row.id}`);
    if (item.data.updated_at !== row.updated_at) {
      throw new ApiError(412, { detail: "changed by someone else since the list was read" });
    }
    return item;
  }

  function conflictOr(err) {
    if (err instanceof ApiError && err.conflict) {
      replace(status, notice(`That ${noun} was changed by someone else meanwhile: nothing `
        + "was changed. The list now shows the current version.", "conflict"));
      reload();
    } else {
      say(errorText(err), "error");
    }
  }

  async function toggle(row) {
    try {
      const item = await fresh(row);
      await api("PATCH", `${path}/${row.id}`, { enabled: !row.enabled }, { etag: item.etag });
      say(`${row.enabled ? "Disabled" : "Enabled"} ${noun} ${row[key]}.`);
      await reload();
    } catch (err) {
      conflictOr(err);
    }
  }

  async function remove(row) {
    if (!confirmAction(`Delete ${noun} ${row[key]}?`)) return;
    try {
      const item = await fresh(row);
      await api("DELETE", `${path}/${row.id}`, null, { etag: item.etag });
      say(`Deleted ${noun} ${row[key]}.`);
      await reload();
    } catch (err) {
      conflictOr(err);
    }
  }

  const panel = { reload, edit, create, say };
  reload();
  return panel;
}
