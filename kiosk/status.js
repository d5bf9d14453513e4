// Shows this node's health on the landing page; refreshes every 5 seconds.
"use strict";
async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/health/", { cache: "no-store" });
    const h = await r.json();
    status.textContent = h.status;
    status.className = h.status === "ok" ? "ok" : "bad";
    for (const k of ["center", "name", "node_id", "version"]) {
      document.getElementById(k).textContent = h[k] || "–";
    }
  } catch (e) {
    status.textContent = "unreachable";
    status.className = "bad";
  }
}
refresh();
setInterval(refresh, 5000);
