// The console's shell: the navigation bar and a hash router (#/gateways?kind=routing).
// Each page module exports `render(view, ctx)`; it may return a function that is called
// when the operator leaves the page (to stop its timers).

import { PAGES } from "./pages.js";
import { el, errorText, notice, replace, session } from "./lib.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const pages = PAGES.filter((p) => !p.admin || session.canWrite);
let leave = null;
let generation = 0;

/** Go to a page: navigate("gateways", {kind: "routing"}). */
export function navigate(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  window.location.hash = `#/${path}${query ? `?${query}` : ""}`;
}

function route() {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const page = pages.find((p) => p.path === path) || pages[0];
  return { page, params: new URLSearchParams(query) };
}

async function show() {
  const mine = ++generation;
  const { page, params } = route();
  if (leave) {
    try { leave(); } catch (err) { console.error(err); }
    leave = null;
  }
  for (const link of nav.querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.page === page.path);
  }
  document.title = `${page.title} · softswitch console`;
  const container = el("section", { class: `page page-${page.path}`, id: `page-${page.path}` });
  replace(view, container);
  try {
    const module = await page.load();
    if (mine !== generation) return; // left meanwhile
    const ctx = { session, params, navigate, page };
    const cleanup = await module.render(container, ctx);
    if (mine !== generation) {
      if (typeof cleanup === "function") cleanup();
      return;
    }
    leave = typeof cleanup === "function" ? cleanup : null;
  } catch (err) {
    console.error(err);
    container.append(notice(`This page failed: ${errorText(err)}`, "error"));
  }
}

replace(nav, pages.map((p) => el("a", { href: `#/${p.path}`, dataset: { page: p.path } }, p.title)));
replace(document.getElementById("who"), `${session.name} (${session.role})`);
window.addEventListener("hashchange", show);
show();
