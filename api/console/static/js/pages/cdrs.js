// CDRs: search by time, numbers, gateway, final code and termination reason; the
// newest matches first; CSV of the same search; one CDR with its attempts as a
// timeline and its SIP ladder.

import {
  api, dataTable, el, errorText, getAll, notice, qs, replace, text, time,
} from "../lib.js";
import { ladderView } from "../ladder.js";

const SHOWN = 200;

/** A datetime-local input's value as Unix time (local time), or null. */
const unixOf = (value) => (value ? Math.floor(new Date(value).getTime() / 1000) : null);

function field(label, input) {
  return el("label", { class: "search-field" }, el("span", { class: "small muted" }, label), input);
}

function options(items, none) {
  return [el("option", { value: "" }, none), ...items.map((g) => el("option", { value: String(g.id) }, g.name))];
}

async function showCdr(view, id) {
  view.append(el("p", {}, el("a", { href: "#/cdrs", id: "back" }, "← CDRs")));
  let cdr;
  try {
    cdr = (await api("GET", `/cdrs/${encodeURIComponent(id)}`)).data;
  } catch (err) {
    view.append(notice(errorText(err), "error"));
    return;
  }
  view.append(el("h1", {}, `CDR ${cdr.id}: ${text(cdr.caller)} → ${text(cdr.callee)}`));
  const shown = ["caller_name", "user_agent", "start_at", "ringing_at", "answer_at", "end_at", "duration",
    "final_code", "final_reason",
    "hangup_by", "termination_reason", "mapping_gateway", "routing_gateway", "phone", "callee_phone",
    "source", "caller_routed", "callee_routed", "caller_sent", "callee_sent", "call_id_in", "call_id_out",
    "node"];
  view.append(el("div", { class: "panel" }, el("dl", { class: "fields", id: "cdr-fields" },
    shown.flatMap((k) => [el("dt", {}, k.replaceAll("_", " ")),
      el("dd", { class: k.startsWith("call_id") ? "mono" : null, dataset: { field: k } },
        k.endsWith("_at") ? time(cdr[k]) : text(cdr[k]))]))));

  // The attempts against the call's own time: a bar from its INVITE to its end (the
  // answered one's to the end of the call), marks at its first provisional and answer.
  const attemptEnd = (a) => (a.outcome === "answered" ? cdr.end_at : a.start_at + (a.duration || 0));
  const end = Math.max(cdr.end_at, ...cdr.attempts.map(attemptEnd));
  const total = Math.max(0.001, end - cdr.start_at);
  const pct = (t) => Math.min(100, Math.max(0, ((t - cdr.start_at) / total) * 100));
  const mark = (at, label) => {
    const node = el("div", { class: "mark", title: `${label} at +${(at - cdr.start_at).toFixed(3)} s` });
    node.style.left = `${pct(at)}%`;
    return node;
  };
  const timeline = el("div", { class: "timeline", id: "attempts" });
  for (const a of cdr.attempts) {
    const bar = el("div", { class: ["bar", a.outcome] });
    bar.style.left = `${pct(a.start_at)}%`;
    bar.style.width = `${Math.max(0.4, pct(attemptEnd(a)) - pct(a.start_at))}%`;
    const track = el("div", { class: "track" }, bar,
      a.first_provisional_at ? mark(a.first_provisional_at, String(a.first_provisional)) : null,
      a.outcome === "answered" ? mark(a.start_at + (a.duration || 0), "answer") : null);
    timeline.append(
      el("div", { class: "what" }, `${a.seq}. ${text(a.routing_gateway)}`,
        el("div", { class: "small muted" }, `${a.outcome}${a.final_code ? ` ${a.final_code}` : ""} · +${(a.start_at - cdr.start_at).toFixed(3)} s`)),
      track);
  }
  timeline.append(el("div", {}), el("div", { class: "small muted" },
    `0 s … ${total.toFixed(1)} s (the call's start to its end)`));
  view.append(el("div", { class: "panel" }, el("h2", {}, "Attempts"),
    cdr.attempts.length ? timeline : el("p", { class: "muted" }, "No attempt: the call was refused before routing.")));

  const ladderBox = el("div", { class: "panel", id: "ladder-panel" }, el("h2", {}, "SIP ladder"));
  view.append(ladderBox);
  try {
    const { data } = await api("GET", `/cdrs/${cdr.id}/sip`);
    ladderBox.append(ladderView(data));
  } catch (err) {
    ladderBox.append(notice(errorText(err), "info"));
  }
}

export async function render(view, ctx) {
  if (ctx.params.get("id")) return showCdr(view, ctx.params.get("id"));
  const status = el("div", {});
  const inputs = {
    since: el("input", { type: "datetime-local", id: "cdr-since", step: 1 }),
    until: el("input", { type: "datetime-local", id: "cdr-until", step: 1 }),
    caller: el("input", { type: "text", id: "cdr-caller", placeholder: "exact, or 44*" }),
    callee: el("input", { type: "text", id: "cdr-callee", placeholder: "exact, or 44*" }),
    mapping_gateway_id: el("select", { id: "cdr-mapping" }, el("option", { value: "" }, "any customer")),
    routing_gateway_id: el("select", { id: "cdr-routing" }, el("option", { value: "" }, "any vendor")),
    final_code: el("input", { type: "text", id: "cdr-code", inputmode: "numeric", placeholder: "486" }),
    termination_reason: el("input", { type: "text", id: "cdr-reason", placeholder: "operator" }),
  };
  for (const [key, input] of Object.entries(inputs)) input.value = ctx.params.get(key) || "";
  const csv = el("a", { class: "button", id: "cdr-csv", download: "cdrs.csv", href: "/api/v1/cdrs.csv" }, "CSV");
  const form = el("form", { class: "search", id: "cdr-search", on: { submit: (e) => { e.preventDefault(); search(); } } },
    field("From", inputs.since), field("To", inputs.until), field("Caller", inputs.caller),
    field("Callee", inputs.callee), field("Customer", inputs.mapping_gateway_id),
    field("Vendor", inputs.routing_gateway_id), field("Final code", inputs.final_code),
    field("Termination reason", inputs.termination_reason),
    el("div", { class: "search-actions" }, el("button", { type: "submit", class: "primary" }, "Search"), csv));
  const table = dataTable({
    id: "cdrs", empty: "No CDR matches.", placeholder: "Filter these rows",
    columns: [
      { key: "id", title: "ID", render: (c) => el("a", { href: `#/cdrs?id=${c.id}`, dataset: { cdr: String(c.id) } }, String(c.id)) ,
        value: (c) => String(c.id) },
      { key: "start_at", title: "Start", value: (c) => time(c.start_at) },
      { key: "caller", title: "Caller", class: "mono" },
      { key: "caller_name", title: "Name", class: "caller-name" },
      { key: "callee", title: "Callee", class: "mono" },
      { key: "mapping_gateway", title: "Customer", value: (c) => text(c.mapping_gateway || c.phone) },
      { key: "routing_gateway", title: "Vendor", value: (c) => text(c.routing_gateway || c.callee_phone) },
      { key: "duration", title: "Duration" },
      { key: "final_code", title: "Code" },
      { key: "termination_reason", title: "Termination" },
    ],
  });
  view.append(el("h1", {}, "CDRs"), status, el("div", { class: "panel" }, form), table.element);

  try {
    const [mapping, routing] = await Promise.all([getAll("/mapping-gateways"), getAll("/routing-gateways")]);
    const keep = (select, items, none) => {
      const chosen = select.value;
      replace(select, options(items, none));
      select.value = chosen;
    };
    keep(inputs.mapping_gateway_id, mapping, "any customer");
    keep(inputs.routing_gateway_id, routing, "any vendor");
    for (const key of ["mapping_gateway_id", "routing_gateway_id"]) inputs[key].value = ctx.params.get(key) || "";
  } catch (err) {
    replace(status, notice(errorText(err), "error"));
  }

  function query() {
    return {
      since: unixOf(inputs.since.value), until: unixOf(inputs.until.value),
      caller: inputs.caller.value.trim(), callee: inputs.callee.value.trim(),
      mapping_gateway_id: inputs.mapping_gateway_id.value, routing_gateway_id: inputs.routing_gateway_id.value,
      final_code: inputs.final_code.value.trim(), termination_reason: inputs.termination_reason.value.trim(),
    };
  }

  async function search() {
    const q = query();
    csv.setAttribute("href", `/api/v1/cdrs.csv${qs(q)}`);
    try {
      const { data } = await api("GET", `/cdrs${qs({ ...q, tail: SHOWN })}`);
      table.setRows(data.items.reverse());
      replace(status, data.items.length === SHOWN
        ? notice(`The newest ${SHOWN} matches; narrow the search or download the CSV for all.`, "info") : "");
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
    }
  }
  await search();
}
