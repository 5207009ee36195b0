// Shared helpers of the console's pages: the REST API, DOM building, tables and forms.
//
// Everything a page shows goes through el() or text nodes: data is only ever set with
// textContent or as a property, never parsed as HTML, so a caller name, a User-Agent or
// a gateway name holding markup is shown as the characters it is.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";

/** Who is signed in: {name, role, csrf, canWrite}. */
export const session = Object.freeze({
  name: meta("operator"),
  role: meta("operator-role"),
  csrf: meta("csrf-token"),
  canWrite: meta("operator-role") === "admin",
});

// ---------------------------------------------------------------------------- the API

/** A refused request: status, the problem JSON, its field errors, the current ETag. */
export class ApiError extends Error {
  constructor(status, problem, etag) {
    const detail = problem && typeof problem === "object" ? problem.detail : null;
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem && typeof problem === "object" ? problem : {};
    this.fields = this.problem.errors || {};
    this.etag = etag;
  }
  /** 412: someone changed the resource since it was read. */
  get conflict() { return this.status === 412; }
}

/** Query string of the non-empty values: qs({a: 1, b: null}) -> "?a=1". */
export function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Call the REST API with the session cookie.
 *   api("GET", "/mapping-gateways")             -> {data, etag, status, headers}
 *   api("PATCH", "/phones/3", {enabled: false}, {etag})   sends If-Match: etag
 * `path` is under /api/v1 unless it starts with /api/. A write carries the session's
 * CSRF token. A refusal throws ApiError (problem JSON, field errors, the current
 * ETag on 412); a session that has ended goes back to the sign-in page.
 */
export async function api(method, path, body, options = {}) {
  const url = path.startsWith("/api/") ? path : `/api/v1${path}`;
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = session.csrf;
  if (options.etag) headers["If-Match"] = options.etag;
  let payload;
  if (body !== undefined && body !== null) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(url, {
    method, headers, body: payload, credentials: "same-origin", cache: "no-store",
  });
  const type = resp.headers.get("Content-Type") || "";
  let data = null;
  if (resp.status !== 204) {
    data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
  }
  const etag = resp.headers.get("ETag");
  if (resp.status === 401) {
    window.location.assign("/console/login");
    throw new ApiError(401, data, etag);
  }
  if (!resp.ok) throw new ApiError(resp.status, data, etag);
  return { data, etag, status: resp.status, headers: resp.headers };
}

/** Every item of a cursor-paged list (following next_after_id), up to `max`. */
export async function getAll(path, params = {}, max = 10000) {
  const items = [];
  let after = 0;
  while (after !== null && items.length < max) {
    const { data } = await api("GET", path + qs({ ...params, limit: 1000, after_id: after }));
    items.push(...data.items);
    after = data.next_after_id;
  }
  return items;
}

let openapi = null;
/** A component schema of the API's OpenAPI document ("MappingGateway", ...). */
export async function schemaOf(name) {
  if (!openapi) openapi = api("GET", "/openapi.json").then((r) => r.data);
  const doc = await openapi;
  return doc.components.schemas[name];
}

// ---------------------------------------------------------------------------- the DOM

const URL_ATTRS = new Set(["href", "src", "action", "formaction"]);

/**
 * Build an element: el("button", {class: "primary", on: {click: fn}}, "Save").
 * attrs: class, text, dataset {}, on {event: handler}, and any property or attribute;
 * true/false set or drop a boolean attribute. Children: strings and numbers become
 * text nodes, nodes are appended, arrays flattened, null/undefined/false skipped.
 * There is no way to pass HTML: "on..." attribute strings and javascript: URLs throw.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (key === "value" || key === "checked") node[key] = value;
    else if (/^on/i.test(key) || key === "style" || key === "innerHTML" || key === "outerHTML") {
      throw new Error(`el(): ${key} is not allowed`);
    } else if (URL_ATTRS.has(key) && /^\s*(javascript|data|vbscript):/i.test(String(value))) {
      throw new Error(`el(): unsafe URL in ${key}`);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Empty a node, then append children as el() does. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A value as display text: null -> "–", booleans yes/no, lists joined. */
export function text(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? value.map(text).join(", ") : "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** Unix time as local "YYYY-MM-DD HH:MM:SS". */
export function time(unix) {
  if (unix === null || unix === undefined) return "–";
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A yes/no cell. */
export function yesNo(value) {
  return el("span", { class: value ? "yes" : "no" }, value ? "yes" : "no");
}

/** A message box: kind is info, ok, error or conflict. */
export function notice(message, kind = "info", ...extra) {
  return el("div", { class: ["notice", kind], role: kind === "error" ? "alert" : "status" },
    message, ...extra);
}

/** The message of an error for a notice (the API's detail, or what went wrong). */
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 503) return `${err.message} (the engine or database is not answering)`;
    return err.message;
  }
  return String(err && err.message ? err.message : err);
}

/** Field errors as lines: {"ips": {"0": ["bad"]}} -> ["0: bad"]. */
export function messages(value) {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value)) return value.flatMap(messages);
  if (typeof value === "object") {
    return Object.entries(value).flatMap(([key, inner]) =>
      messages(inner).map((m) => (/^\d+$/.test(key) ? `item ${Number(key) + 1}: ${m}` : `${key}: ${m}`)));
  }
  return [String(value)];
}

/** A page heading with an optional toolbar of actions. */
export function heading(title, ...actions) {
  return el("div", { class: "toolbar" }, el("h1", {}, title), el("span", { class: "spacer" }), ...actions);
}

// ---------------------------------------------------------------------------- tables

/**
 * A table with a filter box.
 *   const t = dataTable({columns, rows, actions, empty, filter: true, id});
 *   view.append(t.element); t.setRows(newRows);
 * columns: [{key, title, render?(row) -> node|string, value?(row) -> text to filter on}]
 * actions(row) -> [nodes] (a last cell; give none for read-only operators)
 * The filter keeps the rows whose any column's text contains every word typed.
 * After the first setRows() the table has data-loaded="true" (tests wait for it).
 */
export function dataTable({ columns, rows = [], actions = null, empty = "Nothing here.",
  filter = true, id = null, placeholder = "Filter" }) {
  let current = rows;
  const box = filter ? el("input", { class: "filter", type: "search", placeholder, "aria-label": "filter" }) : null;
  const count = el("span", { class: "count" });
  const body = el("tbody");
  const head = el("tr", {}, columns.map((c) => el("th", {}, c.title ?? c.key)), actions ? el("th", {}) : null);
  const table = el("table", { class: "data", id }, el("thead", {}, head), body);
  const cellText = (c, row) => (c.value ? c.value(row) : text(row[c.key]));

  function draw() {
    const words = box ? box.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    const shown = current.filter((row) => {
      if (!words.length) return true;
      const hay = columns.map((c) => cellText(c, row)).join(" \u0000 ").toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    body.replaceChildren();
    for (const row of shown) {
      const tr = el("tr", {}, columns.map((c) => {
        const content = c.render ? c.render(row) : cellText(c, row);
        return el("td", { class: c.class }, content);
      }));
      if (actions) tr.appendChild(el("td", { class: "actions" }, actions(row)));
      body.appendChild(tr);
    }
    if (!shown.length) {
      body.appendChild(el("tr", {}, el("td", { class: "empty", colspan: columns.length + (actions ? 1 : 0) },
        current.length ? "No row matches the filter." : empty)));
    }
    count.textContent = shown.length === current.length ? `${current.length} shown`
      : `${shown.length} of ${current.length} shown`;
  }
  if (box) box.addEventListener("input", draw);
  draw();
  const element = el("div", {}, filter ? el("div", { class: "toolbar" }, box, count) : null,
    el("div", { class: "table-wrap" }, table));
  return {
    element, table, filterBox: box,
    setRows(next) { current = next; table.dataset.loaded = "true"; draw(); },
    get rows() { return current; },
  };
}

// ---------------------------------------------------------------------------- forms

/**
 * Field specs from an OpenAPI component schema, in its order; read-only fields left
 * out. options: {only: [names], skip: [names], labels: {name: label}}.
 * A spec: {name, label, type: text|password|number|checkbox|tristate|select|list|
 * textarea, options: [[value, label]], nullable, help, items: "integer"|"string"}.
 */
export function fieldsFromSchema(schema, options = {}) {
  const props = schema.properties || {};
  const names = options.only || Object.keys(props);
  const skip = new Set(options.skip || []);
  const specs = [];
  for (const name of names) {
    const prop = props[name];
    if (!prop || prop.readOnly || skip.has(name)) continue;
    const spec = {
      name, label: (options.labels || {})[name] || sentence(name.replaceAll("_", " ")),
      nullable: Boolean(prop.nullable), help: prop.description || "",
      required: (schema.required || []).includes(name),
    };
    if (prop.writeOnly) spec.type = "password";
    else if (prop.enum) {
      spec.type = "select";
      spec.options = prop.enum.map((v) => [v, String(v)]);
    } else if (prop.type === "boolean") spec.type = prop.nullable ? "tristate" : "checkbox";
    else if (prop.type === "integer" || prop.type === "number") spec.type = "number";
    else if (prop.type === "array") {
      spec.type = "list";
      spec.items = prop.items && prop.items.type === "integer" ? "integer" : "string";
    } else spec.type = "text";
    if (prop.minimum !== undefined || prop.maximum !== undefined) {
      const range = `${prop.minimum ?? ""}–${prop.maximum ?? ""}`;
      spec.help = spec.help ? `${spec.help} (${range})` : range;
    }
    if (prop.default !== undefined) spec.default = prop.default;
    specs.push(spec);
  }
  return specs;
}

const sentence = (words) => words.charAt(0).toUpperCase() + words.slice(1);

function inputFor(spec, value, readOnly) {
  const id = `f-${spec.name}`;
  const common = { id, name: spec.name, disabled: readOnly };
  if (spec.type === "checkbox") return el("input", { ...common, type: "checkbox", checked: Boolean(value) });
  if (spec.type === "select" || spec.type === "tristate") {
    const opts = spec.type === "tristate"
      ? [["", "(system default)"], ["true", "yes"], ["false", "no"]]
      : [...(spec.nullable ? [["", "–"]] : []), ...spec.options];
    const chosen = value === null || value === undefined ? "" : String(value);
    return el("select", common, opts.map(([v, label]) =>
      el("option", { value: String(v), selected: String(v) === chosen }, label)));
  }
  if (spec.type === "textarea") {
    return el("textarea", { ...common, value: value === null || value === undefined ? "" : String(value) });
  }
  if (spec.type === "list") {
    return el("input", { ...common, type: "text", value: Array.isArray(value) ? value.join(", ") : "",
      placeholder: "comma-separated" });
  }
  if (spec.type === "password") {
    return el("input", { ...common, type: "password", autocomplete: "new-password",
      placeholder: spec.keepPlaceholder || "" });
  }
  return el("input", { ...common, type: "text", inputmode: spec.type === "number" ? "decimal" : null,
    value: value === null || value === undefined ? "" : String(value) });
}

/** The JSON value a field's input holds (undefined: leave the field out). */
function valueOf(spec, input) {
  if (spec.type === "checkbox") return input.checked;
  const raw = input.value;
  if (spec.type === "tristate") return raw === "" ? null : raw === "true";
  if (spec.type === "select") {
    if (raw === "") return spec.nullable ? null : undefined;
    const option = spec.options.find(([v]) => String(v) === raw);
    return option ? option[0] : raw;
  }
  if (spec.type === "password") return raw === "" ? undefined : raw;
  if (spec.type === "list") {
    const parts = raw.split(/[\s,]+/).filter(Boolean);
    return spec.items === "integer" ? parts.map((p) => (/^-?\d+$/.test(p) ? Number(p) : p)) : parts;
  }
  const trimmed = raw.trim();
  if (spec.type === "number") {
    if (trimmed === "") return spec.nullable ? null : undefined;
    // Sent as typed when it is not a number: the API says what is wrong, beside the field.
    return /^-?\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
  }
  if (trimmed === "") return spec.nullable ? null : (spec.keepEmpty ? "" : undefined);
  return raw;
}

/**
 * A form of fields, with the API's field errors shown beside each field.
 *   const f = form({fields, values, more, submitLabel, readOnly, onSubmit, onCancel});
 * fields: specs (fieldsFromSchema or by hand); more: specs under a "More settings"
 * fold; values: the current item (edit) or {} (create).
 * onSubmit(data, changed) runs on submit: data holds every field that has a value,
 * changed only those that differ from `values`. If it throws an ApiError, its field
 * errors go beside their fields and the rest above the buttons; a 412 shows
 * "changed by someone else" with a Reload button calling onReload.
 */
export function form({ fields, more = [], values = {}, submitLabel = "Save", readOnly = false,
  onSubmit, onCancel = null, onReload = null, id = null }) {
  const rows = new Map();
  const formError = el("div", { class: "form-error" });
  const build = (spec) => {
    const input = inputFor(spec, spec.name in values ? values[spec.name] : spec.default, readOnly);
    const error = el("div", { class: "field-error", id: `err-${spec.name}`, hidden: true });
    const wrap = el("div", { class: "field-input", dataset: { field: spec.name } }, input,
      spec.help ? el("div", { class: "help" }, spec.help) : null, error);
    rows.set(spec.name, { spec, input, error, wrap });
    return [el("label", { class: "field-label", for: `f-${spec.name}` }, spec.label || spec.name), wrap];
  };
  const main = fields.map(build);
  const fold = more.length ? el("details", {}, el("summary", {}, "More settings"),
    el("div", { class: "more" }, more.map(build))) : null;
  const submit = el("button", { type: "submit", class: "primary", disabled: readOnly, hidden: readOnly }, submitLabel);
  const actions = el("div", { class: "form-actions" }, submit,
    onCancel ? el("button", { type: "button", on: { click: onCancel } }, readOnly ? "Close" : "Cancel") : null);
  const node = el("form", { class: "edit", id, novalidate: true }, main, fold, formError, actions);

  function clearErrors() {
    formError.replaceChildren();
    for (const { error, wrap } of rows.values()) {
      error.hidden = true;
      error.textContent = "";
      wrap.classList.remove("has-error");
    }
  }

  function showError(err) {
    const fieldErrors = err instanceof ApiError ? err.fields : {};
    const unplaced = [];
    for (const [name, value] of Object.entries(fieldErrors)) {
      const row = rows.get(name);
      if (!row) { unplaced.push(...messages({ [name]: value })); continue; }
      row.error.textContent = messages(value).join("; ");
      row.error.hidden = false;
      row.wrap.classList.add("has-error");
      if (row.wrap.closest("details")) row.wrap.closest("details").open = true;
    }
    if (err instanceof ApiError && err.conflict) {
      formError.append(notice("Changed by someone else since you opened it: nothing was saved. "
        + "Reload to see the current version, then make your change again.", "conflict",
      onReload ? el("button", { type: "button", class: "reload", on: { click: onReload } }, "Reload") : null));
      return;
    }
    const summary = Object.keys(fieldErrors).length && !unplaced.length
      ? "Not saved: see the fields marked in red." : errorText(err);
    formError.append(notice(summary, "error"), ...unplaced.map((m) => notice(m, "error")));
  }

  function data() {
    const out = {};
    const changed = {};
    for (const { spec, input } of rows.values()) {
      const value = valueOf(spec, input);
      if (value === undefined) continue;
      out[spec.name] = value;
      if (JSON.stringify(value) !== JSON.stringify(values[spec.name])) changed[spec.name] = value;
    }
    return { data: out, changed };
  }

  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (readOnly) return;
    clearErrors();
    submit.disabled = true;
    try {
      const { data: all, changed } = data();
      await onSubmit(all, changed);
    } catch (err) {
      showError(err);
    } finally {
      submit.disabled = false;
    }
  });
  return { element: node, showError, clearErrors, data, field: (name) => rows.get(name)?.input };
}

/** Ask before a destructive action. */
export function confirmAction(message) {
  return window.confirm(message);
}

/** A button; for read-only operators pass nothing at all (no button is drawn). */
export function button(label, onClick, className = null, title = null) {
  return el("button", { type: "button", class: className, title, on: { click: onClick } }, label);
}

/** A small busy-safe runner: show `fn`'s failure in `where` as a notice. */
export async function attempt(where, fn) {
  try {
    return await fn();
  } catch (err) {
    where.prepend(notice(errorText(err), err instanceof ApiError && err.conflict ? "conflict" : "error"));
    return undefined;
  }
}
