// Parameters: every system parameter of the registry with its value, default, range and
// description; an admin changes one in place, and a refused value is shown beside it.

import {
  api, button, dataTable, el, errorText, messages, notice, replace, session, text,
} from "../lib.js";

function rangeOf(p) {
  if (p.kind === "onoff") return "On / Off";
  if (p.kind === "choice") return p.choices.map(String).join(" / ");
  if (p.minimum === null && p.maximum === null) return "";
  return `${p.minimum ?? ""}–${p.maximum ?? ""}${p.unit ? ` ${p.unit}` : ""}`;
}

function editorFor(p) {
  if (p.kind === "onoff" || p.kind === "choice") {
    const choices = p.kind === "onoff" ? ["On", "Off"] : p.choices;
    return el("select", { class: "param-value" }, choices.map((c) =>
      el("option", { value: String(c), selected: String(c) === String(p.value) }, String(c))));
  }
  const shown = Array.isArray(p.value) ? p.value.join(", ") : (p.value ?? "");
  return el("input", { class: "param-value", type: "text", value: String(shown) });
}

/** The typed text as the JSON value the parameter's kind takes (the API checks it). */
function parse(p, raw) {
  const t = raw.trim();
  const num = (s) => (/^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s);
  switch (p.kind) {
    case "int": return num(t);
    case "choice": return p.choices.find((c) => String(c) === t) ?? num(t);
    case "optional_int": return t === "" || t.toLowerCase() === "none" ? null : num(t);
    case "auto_int": return t.toLowerCase() === "auto" ? "Auto" : num(t);
    case "seconds_list": case "int_pair": return t.split(/[\s,/]+/).filter(Boolean).map(num);
    default: return raw;
  }
}

export async function render(view) {
  const status = el("div", {});
  view.append(el("h1", {}, "Parameters"), el("p", { class: "muted" },
    "Live parameters act within a second of a change; the others at the next start."), status);
  let table;
  const load = async () => {
    try {
      const { data } = await api("GET", "/parameters");
      table.setRows(data.items);
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  };

  function edit(p, cell) {
    const input = editorFor(p);
    const error = el("div", { class: "field-error", id: `err-${p.name}` });
    const save = async () => {
      error.textContent = "";
      try {
        const { data } = await api("PUT", `/parameters/${encodeURIComponent(p.name)}`,
          { value: parse(p, input.value) });
        replace(status, notice(`${p.name} = ${text(data.value)}`, "ok"));
        await load();
      } catch (err) {
        error.textContent = err.fields && err.fields.value ? messages(err.fields.value).join("; ")
          : errorText(err);
        cell.classList.add("has-error");
      }
    };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") save(); if (e.key === "Escape") load(); });
    replace(cell, el("div", { class: "inline-form", dataset: { param: p.name } }, input,
      button("Save", save, "primary save"), button("Cancel", () => load(), "cancel"), error));
    input.focus();
  }

  table = dataTable({
    id: "parameters", placeholder: "Filter by name, group, description",
    columns: [
      { key: "group", title: "Group" },
      { key: "name", title: "Name", class: "mono" },
      {
        key: "value", title: "Value", class: "value",
        render: (p) => el("span", { class: p.value !== p.default ? "changed" : null }, text(p.value)),
      },
      { key: "default", title: "Default" },
      { key: "range", title: "Range", value: rangeOf },
      { key: "live", title: "Live", value: (p) => (p.live ? "yes" : "at start") },
      { key: "description", title: "Description" },
    ],
    actions: session.canWrite ? (p) => [button("Edit", (e) => edit(p, e.target.closest("tr").querySelector("td.value")), "edit")] : null,
  });
  view.append(table.element);
  await load();
}
