// Phones: SIP phone accounts (their username is their number).

import { el, text, yesNo } from "../lib.js";
import { resourcePanel } from "../resource.js";

export function render(view, ctx) {
  view.append(el("h1", {}, "Phones"));
  const box = el("div", {});
  view.append(box);
  resourcePanel(box, {
    path: "/phones", schema: "Phone", noun: "phone", key: "username", tableId: "phones",
    main: ["username", "password", "display_name", "capacity", "enabled"],
    columns: [
      { key: "id", title: "ID" },
      { key: "username", title: "Username" },
      { key: "display_name", title: "Display name" },
      { key: "capacity", title: "Capacity" },
      { key: "enabled", title: "Enabled", render: (r) => yesNo(r.enabled), value: (r) => text(r.enabled) },
    ],
    extraActions: (row) => [el("a", { href: `#/registrations?username=${encodeURIComponent(row.username)}`,
      class: "button" }, "Registrations")],
  });
  return undefined;
}
