// Routing test: what a call from a customer (or a phone) with these numbers would do
// now, without placing it (POST /routing/test): each number stage, the lists, and every
// vendor in or out with why.

import { api, el, errorText, getAll, notice, replace, text, time } from "../lib.js";

function stagesTable(stages, id) {
  if (!stages.length) return el("p", { class: "muted" }, "No rule changes the numbers.");
  return el("table", { class: "data", id },
    el("thead", {}, el("tr", {}, ["Stage", "Number", "In", "Out", "Rule", "Why"].map((h) => el("th", {}, h)))),
    el("tbody", {}, stages.map((s) => el("tr", {},
      el("td", {}, s.stage), el("td", {}, s.number), el("td", { class: "mono" }, s.input),
      el("td", { class: "mono" }, s.output), el("td", { class: "mono" }, text(s.rule)), el("td", {}, s.detail)))));
}

function listsTable(checks) {
  if (!checks.length) return el("p", { class: "muted" }, "No black or white list applies.");
  return el("table", { class: "data", id: "route-lists" },
    el("thead", {}, el("tr", {}, ["Check", "Number", "List", "Verdict", "Decided by"].map((h) => el("th", {}, h)))),
    el("tbody", {}, checks.map((c) => el("tr", { class: c.verdict === "refuse" ? "refused" : null },
      el("td", {}, c.check), el("td", { class: "mono" }, c.number), el("td", {}, text(c.rule)),
      el("td", {}, c.verdict), el("td", {}, text(c.decided_by || c.reason))))));
}

function gatewaysTable(gateways) {
  return el("table", { class: "data", id: "route-gateways" },
    el("thead", {}, el("tr", {}, ["#", "Vendor", "In/out", "Why", "Prefix", "Priority", "Calls/capacity",
      "Order", "Sent (caller → callee)"].map((h) => el("th", {}, h)))),
    el("tbody", {}, gateways.map((g) => el("tr", { class: g.verdict === "in" ? "in" : "out", dataset: { gateway: g.name } },
      el("td", {}, text(g.position)), el("td", { class: "name" }, g.name),
      el("td", { class: g.verdict === "in" ? "yes" : "no" }, g.verdict),
      el("td", {}, el("div", {}, g.reason.replaceAll("_", " ")), el("div", { class: "small muted" }, g.detail),
        g.retry_after_until ? el("div", { class: "small" }, `held until ${time(g.retry_after_until)}`) : null),
      el("td", { class: "mono" }, text(g.prefix)), el("td", {}, String(g.priority)),
      el("td", {}, `${g.current_calls}/${g.capacity ?? "∞"}`), el("td", { class: "small" }, g.order),
      el("td", { class: "mono" }, g.sent ? `${g.sent.caller} → ${g.sent.callee}` : "–")))));
}

export async function render(view) {
  const origin = el("select", { id: "rt-origin" }, el("option", { value: "" }, "customer (mapping gateway)…"));
  const caller = el("input", { type: "text", id: "rt-caller", placeholder: "caller number" });
  const callee = el("input", { type: "text", id: "rt-callee", placeholder: "callee number" });
  const result = el("div", { id: "rt-result" });
  const status = el("div", {});
  const form = el("form", { class: "search", id: "routing-test", on: { submit: (e) => { e.preventDefault(); run(); } } },
    el("label", { class: "search-field" }, el("span", { class: "small muted" }, "From"), origin),
    el("label", { class: "search-field" }, el("span", { class: "small muted" }, "Caller"), caller),
    el("label", { class: "search-field" }, el("span", { class: "small muted" }, "Callee"), callee),
    el("div", { class: "search-actions" }, el("button", { type: "submit", class: "primary" }, "Test")));
  view.append(el("h1", {}, "Routing test"),
    el("p", { class: "muted" }, "What a call would do now, without placing it: nothing is sent, counted or written."),
    status, el("div", { class: "panel" }, form), result);
  try {
    const [gateways, phones] = await Promise.all([getAll("/mapping-gateways"), getAll("/phones")]);
    origin.append(...gateways.map((g) => el("option", { value: `m:${g.id}` }, `customer: ${g.name}`)),
      ...phones.map((p) => el("option", { value: `p:${p.username}` }, `phone: ${p.username}`)));
  } catch (err) {
    replace(status, notice(errorText(err), "error"));
  }

  async function run() {
    const [kind, key] = origin.value.split(/:(.*)/s);
    const body = { caller: caller.value.trim(), callee: callee.value.trim() };
    if (kind === "m") body.mapping_gateway = Number(key);
    else if (kind === "p") body.phone = key;
    try {
      const { data } = await api("POST", "/routing/test", body);
      status.replaceChildren();
      const r = data.result;
      replace(result,
        notice(r.outcome === "refused" ? `Refused at ${r.stage}: ${r.code} (${r.reason})`
          : r.outcome === "phone" ? `To our phone: ${r.reason}` : `To vendors: ${r.reason}`,
        r.outcome === "refused" ? "error" : "ok"),
        el("div", { class: "panel" }, el("h2", {}, "Numbers"),
          el("p", {}, "Received: ", el("span", { class: "mono" }, `${data.received.caller} → ${data.received.callee}`),
            data.platform ? [" · after the customer's rules: ",
              el("span", { class: "mono", id: "rt-platform" }, `${data.platform.caller} → ${data.platform.callee}`)] : null),
          stagesTable(data.stages, "route-stages")),
        el("div", { class: "panel" }, el("h2", {}, "Black and white lists"), listsTable(data.lists)),
        data.phone ? el("div", { class: "panel" }, el("h2", {}, "Our phone"),
          el("p", {}, `${data.phone.username}: ${data.phone.reachable ? `registered at ${text(data.phone.contact)}` : text(data.phone.reason)}`)) : null,
        el("div", { class: "panel" }, el("h2", {}, "Vendors, in the order tried, and the others"),
          gatewaysTable(data.gateways)));
    } catch (err) {
      replace(status, notice(errorText(err), "error"));
      if (err.fields) {
        const lines = Object.entries(err.fields).map(([k, v]) => `${k}: ${[].concat(v).join("; ")}`);
        status.append(...lines.map((l) => notice(l, "error")));
      }
    }
  }
}
