// The console's pages, in navigation order. Adding a page is one module under pages/
// (exporting `render(view, ctx)`) and one line here. `admin: true` hides a page from
// read-only operators.

export const PAGES = [
  { path: "dashboard", title: "Dashboard", load: () => import("./pages/dashboard.js") },
  { path: "calls", title: "Live calls", load: () => import("./pages/calls.js") },
  { path: "cdrs", title: "CDRs", load: () => import("./pages/cdrs.js") },
  { path: "gateways", title: "Gateways", load: () => import("./pages/gateways.js") },
  { path: "phones", title: "Phones", load: () => import("./pages/phones.js") },
  { path: "numbers", title: "Number rules", load: () => import("./pages/numbers.js") },
  { path: "parameters", title: "Parameters", load: () => import("./pages/parameters.js") },
  { path: "registrations", title: "Registrations", load: () => import("./pages/registrations.js") },
  { path: "security", title: "Security", load: () => import("./pages/security.js") },
  { path: "upstream", title: "Upstream", load: () => import("./pages/upstream.js") },
  { path: "audit", title: "Audit", load: () => import("./pages/audit.js") },
  { path: "routing-test", title: "Routing test", load: () => import("./pages/routing_test.js") },
  { path: "operators", title: "Operators", load: () => import("./pages/operators.js"), admin: true },
];
