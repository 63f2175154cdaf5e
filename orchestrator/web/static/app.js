// The page's little script: no framework, no build step, nothing from the internet.
"use strict";

// Every action form asks before it posts.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Only the photo's own suggestions may be added: say so before the server has to.
function checkSuggestion(input) {
  const list = document.getElementById(input.getAttribute("list"));
  const allowed = Array.from(list ? list.options : []).map((o) => o.value.toLowerCase());
  const value = input.value.trim().toLowerCase();
  input.setCustomValidity(
    value === "" || allowed.includes(value) ? "" : "Only this photo's suggestions can be added: " +
      Array.from(list.options).map((o) => o.value).join(", "),
  );
}
document.addEventListener("input", (event) => {
  if (event.target.matches("form.add input[list]")) {
    checkSuggestion(event.target);
  }
});

// Moments are written in UTC by the server (what a page without scripts shows); here they
// become the reader's local time, with the zone.
const localTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});
function showLocalTimes(root) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      element.textContent = localTime.format(moment);
      element.title = element.getAttribute("datetime");
    }
  }
}
showLocalTimes(document);

// The jobs table follows the jobs: every few seconds it asks what changed since what it shows
// (its stamp) and gets only the rows that changed, rendered and escaped by the server with the
// page's own template, and their order when it changed; nothing at all (204) when nothing did.
const REFRESH_MS = 2000;
const rows = document.querySelector("[data-refresh]");
if (rows) {
  const apply = (delta) => {
    const fresh = new Map();
    for (const [job, html] of Object.entries(delta.rows)) {
      const holder = document.createElement("tbody");
      holder.innerHTML = html;
      const row = holder.querySelector("tr[data-job]");
      if (row) {
        showLocalTimes(row);
        fresh.set(job, row);
      }
    }
    const shown = new Map(
      Array.from(rows.querySelectorAll("tr[data-job]")).map((row) => [row.dataset.job, row]),
    );
    if (delta.order) {
      const wanted = new Set(delta.order);
      for (const [job, row] of shown) {
        if (!wanted.has(job)) {
          row.remove();
        }
      }
      for (const job of delta.order) {
        const row = fresh.get(job) || shown.get(job);
        if (row) {
          rows.appendChild(row);
          if (shown.has(job) && row !== shown.get(job)) {
            shown.get(job).remove();
          }
        }
      }
    } else {
      for (const [job, row] of fresh) {
        const old = shown.get(job);
        if (old) {
          old.replaceWith(row);
        }
      }
    }
    rows.dataset.stamp = delta.stamp;
  };
  const refresh = async () => {
    if (!document.hidden) {
      try {
        const url = new URL(rows.dataset.refresh, window.location.href);
        url.searchParams.set("since", rows.dataset.stamp || "");
        const answer = await fetch(url, { credentials: "same-origin" });
        if (answer.status === 200) {
          apply(await answer.json());
        }
        if (answer.ok) {
          rows.dataset.refreshed = String(Date.now());
        }
      } catch (error) {
        // The server restarts or the network blinks: the next turn tries again.
      }
    }
    window.setTimeout(refresh, REFRESH_MS);
  };
  window.setTimeout(refresh, REFRESH_MS);
}
