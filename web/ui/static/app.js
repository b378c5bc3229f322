// Niceties only: every page works without this script.
"use strict";
document.documentElement.classList.remove("no-js");

// Relative times: refresh "3 minutes ago" while the page stays open.
function relTime(t) {
  let d = (Date.now() - t.getTime()) / 1000, future = d < 0;
  d = Math.abs(d);
  const units = [[45, null], [5400, 60, "minute"], [129600, 3600, "hour"], [3888000, 86400, "day"], [47088000, 2592000, "month"], [Infinity, 31536000, "year"]];
  for (const [limit, size, unit] of units) {
    if (d < limit) {
      if (!unit) return future ? "in a few seconds" : "just now";
      const n = Math.round(d / size), s = n + " " + unit + (n === 1 ? "" : "s");
      return future ? "in " + s : s + " ago";
    }
  }
}
function refreshTimes(root) {
  for (const el of (root || document).querySelectorAll("time[datetime]")) {
    el.textContent = relTime(new Date(el.getAttribute("datetime")));
  }
}
setInterval(refreshTimes, 30000);

// Copy buttons.
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button.copy");
  if (!b) return;
  const from = b.dataset.copyFrom && document.getElementById(b.dataset.copyFrom);
  const text = from ? from.textContent : b.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
    b.textContent = "Copied";
  } catch (e) {
    const r = document.createRange();
    r.selectNodeContents(from || b.previousElementSibling);
    getSelection().removeAllRanges();
    getSelection().addRange(r);
    b.textContent = "Selected";
  }
  setTimeout(() => { b.textContent = "Copy"; }, 1500);
});

// Confirm destructive forms.
document.addEventListener("submit", (ev) => {
  const f = ev.target;
  if (f.dataset.confirm && !confirm(f.dataset.confirm)) ev.preventDefault();
});

// Events page: follow new events live (Server-Sent Events).
const live = document.getElementById("live");
if (live && window.EventSource) {
  const rows = document.getElementById("event-rows");
  const es = new EventSource(live.dataset.stream);
  live.hidden = false;
  es.addEventListener("row", (ev) => {
    const t = document.createElement("tbody");
    t.innerHTML = ev.data;
    const tr = t.firstElementChild;
    if (!tr) return;
    tr.classList.add("fresh");
    rows.prepend(tr);
    const none = document.getElementById("no-events");
    if (none) none.remove();
    refreshTimes(tr);
  });
  es.onerror = () => { live.classList.add("lost"); };
  es.onopen = () => { live.classList.remove("lost"); };
}
