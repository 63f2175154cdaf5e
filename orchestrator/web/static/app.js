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

// The jobs table follows the jobs: its rows are fetched again every second (escaped by the
// server, which renders them with the same template as the page).
const rows = document.querySelector("[data-refresh]");
if (rows) {
  const refresh = async () => {
    try {
      const answer = await fetch(rows.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) {
        rows.innerHTML = await answer.text();
        rows.dataset.refreshed = String(Date.now());
      }
    } catch (error) {
      // The server restarts or the network blinks: the next turn tries again.
    }
    window.setTimeout(refresh, 1000);
  };
  window.setTimeout(refresh, 1000);
}
