// Gateways: mapping gateways (customer trunks) and routing gateways (vendor trunks).

import { el, text, yesNo } from "../lib.js";
import { resourcePanel } from "../resource.js";

const KINDS = {
  mapping: {
    title: "Mapping gateways (customers)", path: "/mapping-gateways", schema: "MappingGateway",
    noun: "mapping gateway",
    main: ["name", "auth_mode", "ips", "port", "username", "password", "capacity", "enabled"],
    labels: { ips: "IP addresses", auth_mode: "Authentication" },
    columns: [
      { key: "id", title: "ID" },
      { key: "name", title: "Name", class: "name" },
      { key: "auth_mode", title: "Authentication" },
      { key: "ips", title: "IP addresses" },
      { key: "port", title: "Port" },
      { key: "username", title: "Username" },
      { key: "capacity", title: "Capacity" },
      { key: "enabled", title: "Enabled", render: (r) => yesNo(r.enabled), value: (r) => text(r.enabled) },
    ],
  },
  routing: {
    title: "Routing gateways (vendors)", path: "/routing-gateways", schema: "RoutingGateway",
    noun: "routing gateway",
    main: ["name", "host", "port", "transport", "prefixes", "priority", "prefix_mode", "capacity",
      "enabled"],
    columns: [
      { key: "id", title: "ID" },
      { key: "name", title: "Name", class: "name" },
      { key: "host", title: "Host" },
      { key: "port", title: "Port" },
      { key: "transport", title: "Transport" },
      { key: "prefixes", title: "Prefixes" },
      { key: "priority", title: "Priority" },
      { key: "capacity", title: "Capacity" },
      { key: "enabled", title: "Enabled", render: (r) => yesNo(r.enabled), value: (r) => text(r.enabled) },
    ],
  },
};

export function render(view, ctx) {
  const kind = ctx.params.get("kind") === "routing" ? "routing" : "mapping";
  const spec = KINDS[kind];
  view.append(
    el("h1", {}, "Gateways"),
    el("div", { class: "tabs" }, Object.entries(KINDS).map(([name, k]) =>
      el("a", { href: `#/gateways?kind=${name}`, class: name === kind ? "active" : null, id: `tab-${name}` },
        k.title))),
  );
  const box = el("div", {});
  view.append(box);
  resourcePanel(box, { ...spec, tableId: `${kind}-gateways` });
}
