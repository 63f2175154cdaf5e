// The review as a culling tool: a grid over the whole list of which only the rows on screen
// exist, a loupe, the keys, a selection and bulk actions. Every action asks for a small JSON
// answer and changes the photos in place; a poll shows what another reviewer did. Without
// this script the page is a paged grid of forms that does the same, more slowly.
import { command } from "./review-keys.js";
import { loupeParts } from "./review-loupe.js";

(() => {
  const grid = document.getElementById("grid");
  if (!grid) {
    return;
  }
  const job = grid.dataset.job;
  const csrf = grid.dataset.csrf;
  let open = grid.dataset.open === "1";
  const bar = document.getElementById("review-bar");
  const notice = document.getElementById("notice");
  const bulk = document.getElementById("bulk");
  const selectedCount = document.getElementById("selected-count");
  const toDecide = document.getElementById("to-decide");

  const TILE_WIDTH = 180; // the tiles' least width; the row's width is shared among them
  const TILE_HEIGHT = 196;
  const HEAD_HEIGHT = 44;
  const OVERSCAN = 1.5; // screens drawn beyond the visible one, above and below
  const POLL_MS = 3000;
  const KEPT_DETAILS = 200; // photos whose loupe answer is kept
  const DECISION = { u: "undecided", a: "approved", h: "held" };

  let sections = [];
  let photos = []; // {id, section, name, d, f, k, v}
  const where = new Map(); // photo id -> index in photos
  let current = 0;
  const selected = new Set();
  let anchor = null;
  let stamp = grid.dataset.stamp;
  let counts = {};
  let rows = []; // {top, height, head?: section, start, end}
  let photoRow = []; // photo index -> its row
  let columns = 1;
  const drawn = new Map(); // row index -> element
  const details = new Map(); // photo id -> the loupe's JSON
  let loupe = null; // the loupe's element when open

  const say = (text, bad = false) => {
    notice.textContent = text;
    notice.classList.toggle("bad", bad);
  };

  // ---- the grid -------------------------------------------------------------------

  const layout = () => {
    columns = Math.max(1, Math.floor(grid.clientWidth / TILE_WIDTH));
    rows = [];
    photoRow = [];
    let top = 0;
    let index = 0;
    while (index < photos.length) {
      const section = photos[index].section;
      rows.push({ top, height: HEAD_HEIGHT, head: section, start: index, end: index });
      top += HEAD_HEIGHT;
      let end = index;
      while (end < photos.length && photos[end].section === section) {
        end += 1;
      }
      for (let start = index; start < end; start += columns) {
        const stop = Math.min(end, start + columns);
        for (let i = start; i < stop; i += 1) {
          photoRow[i] = rows.length;
        }
        rows.push({ top, height: TILE_HEIGHT, start, end: stop });
        top += TILE_HEIGHT;
      }
      index = end;
    }
    grid.style.height = `${top}px`;
    grid.style.setProperty("--columns", String(columns));
    for (const element of drawn.values()) {
      element.remove();
    }
    drawn.clear();
    draw();
  };

  const rowOf = (index) => photoRow[index] ?? 0;

  const thumbUrl = (photo) => `/jobs/${job}/photos/${photo.id}/thumb?v=${encodeURIComponent(photo.v)}`;

  const onScreen = (number) => {
    const row = rows[number];
    const top = window.scrollY - gridTop();
    return row.top + row.height >= top && row.top <= top + window.innerHeight;
  };

  const tile = (photo, index, near) => {
    const element = document.createElement("div");
    element.className = `tile d-${DECISION[photo.d]}`;
    element.classList.toggle("flagged", photo.f === 1);
    element.classList.toggle("current", index === current);
    element.classList.toggle("selected", selected.has(photo.id));
    element.dataset.index = String(index);
    element.dataset.photo = String(photo.id);
    if (photo.v) {
      const image = document.createElement("img");
      image.alt = "";
      image.decoding = "async";
      // What is on screen first; the rows drawn ahead of the scroll after it.
      image.fetchPriority = near ? "high" : "low";
      image.src = thumbUrl(photo);
      element.appendChild(image);
    } else {
      const none = document.createElement("span");
      none.className = "noimage";
      none.textContent = "no JPEG";
      element.appendChild(none);
    }
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = photo.name;
    element.appendChild(name);
    const marks = document.createElement("span");
    marks.className = "marks";
    const mark = (kind, text) => {
      const span = document.createElement("span");
      span.className = kind;
      span.textContent = text;
      marks.appendChild(span);
    };
    if (photo.d === "a") {
      mark("approved", "✓");
    } else if (photo.d === "h") {
      mark("held", "held");
    }
    if (photo.f === 1) {
      mark("flag", "⚑");
    }
    if (photo.k === 0) {
      mark("bare", "no keywords");
    }
    element.appendChild(marks);
    return element;
  };

  const drawRow = (number) => {
    const row = rows[number];
    const near = row.head === undefined && onScreen(number);
    const element = document.createElement("div");
    element.style.top = `${row.top}px`;
    element.style.height = `${row.height}px`;
    if (row.head !== undefined) {
      element.className = "vrow section";
      element.textContent = sections[row.head] || "the shoot's top folder";
    } else {
      element.className = "vrow tiles";
      for (let index = row.start; index < row.end; index += 1) {
        element.appendChild(tile(photos[index], index, near));
      }
    }
    return element;
  };

  const gridTop = () => grid.getBoundingClientRect().top + window.scrollY;

  const draw = () => {
    if (!rows.length) {
      return;
    }
    const top = window.scrollY - gridTop();
    const span = window.innerHeight * OVERSCAN;
    const wanted = new Set();
    for (let number = 0; number < rows.length; number += 1) {
      const row = rows[number];
      if (row.top + row.height >= top - span && row.top <= top + window.innerHeight + span) {
        wanted.add(number);
      }
    }
    for (const [number, element] of drawn) {
      if (!wanted.has(number)) {
        element.remove();
        drawn.delete(number);
      }
    }
    for (const number of wanted) {
      if (!drawn.has(number)) {
        const element = drawRow(number);
        grid.appendChild(element);
        drawn.set(number, element);
      }
    }
  };

  const redraw = (indexes) => {
    const numbers = new Set(indexes.map((index) => rowOf(index)));
    for (const number of numbers) {
      const old = drawn.get(number);
      if (old) {
        const element = drawRow(number);
        old.replaceWith(element);
        drawn.set(number, element);
      }
    }
  };

  let frame = 0;
  const soon = () => {
    if (!frame) {
      frame = window.requestAnimationFrame(() => {
        frame = 0;
        draw();
      });
    }
  };

  const barHeight = () => (bar ? bar.getBoundingClientRect().height : 0);

  const reveal = (index) => {
    const row = rows[rowOf(index)];
    if (!row) {
      return;
    }
    const top = gridTop() + row.top;
    const above = window.scrollY + barHeight();
    if (top < above) {
      window.scrollTo(0, top - barHeight() - (rowOf(index) > 0 ? HEAD_HEIGHT : 0));
    } else if (top + row.height > window.scrollY + window.innerHeight) {
      window.scrollTo(0, top + row.height - window.innerHeight + 8);
    }
    draw();
  };

  // ---- where we are and what is ticked -------------------------------------------

  const remember = () => {
    try {
      window.sessionStorage.setItem(`review:${job}`, JSON.stringify([...selected]));
    } catch (error) {
      // Storage refused (private mode): the selection lives as long as the page.
    }
  };

  const showSelection = () => {
    if (selectedCount) {
      selectedCount.textContent = selected.size
        ? `With the ${selected.size} ticked photos`
        : "With the ticked photos";
    }
    bar.classList.toggle("has-selection", selected.size > 0);
    remember();
  };

  const moveTo = (index, { extend = false } = {}) => {
    if (!photos.length) {
      return;
    }
    const before = current;
    current = Math.max(0, Math.min(photos.length - 1, index));
    if (extend) {
      if (anchor === null) {
        anchor = before;
      }
      selected.clear();
      const [low, high] = anchor < current ? [anchor, current] : [current, anchor];
      for (let i = low; i <= high; i += 1) {
        selected.add(photos[i].id);
      }
      showSelection();
      redrawAll();
    } else {
      anchor = current;
      redraw([before, current]);
    }
    window.history.replaceState(null, "", `#p${photos[current].id}`);
    reveal(current);
    if (loupe) {
      showLoupe();
    }
  };

  const redrawAll = () => {
    for (const [number, old] of drawn) {
      const element = drawRow(number);
      old.replaceWith(element);
      drawn.set(number, element);
    }
  };

  const toggle = (index) => {
    const id = photos[index].id;
    if (selected.has(id)) {
      selected.delete(id);
    } else {
      selected.add(id);
    }
    anchor = index;
    showSelection();
    redraw([index]);
  };

  // ---- what the server says ------------------------------------------------------

  const apply = (entries) => {
    const touched = [];
    for (const [id, , , decision, flagged, keywords] of entries) {
      const index = where.get(id);
      if (index === undefined) {
        continue;
      }
      const photo = photos[index];
      if (photo.d !== decision) {
        counts[DECISION[photo.d]] -= 1;
        counts[DECISION[decision]] += 1;
      }
      photo.d = decision;
      photo.f = flagged;
      photo.k = keywords;
      details.delete(id);
      touched.push(index);
    }
    redraw(touched);
    showCounts();
    if (loupe && touched.includes(current)) {
      showLoupe();
    }
  };

  const showCounts = () => {
    for (const link of document.querySelectorAll(".review-filters a[data-show]")) {
      const show = link.dataset.show === "all" ? "" : link.dataset.show;
      const count = link.querySelector(".count");
      if (count && counts[show] !== undefined) {
        count.textContent = counts[show].toLocaleString();
      }
    }
    if (toDecide && counts.undecided !== undefined) {
      toDecide.textContent = counts.undecided.toLocaleString();
    }
  };

  const closed = (state) => {
    if (state !== "reviewing" && open) {
      open = false;
      say(`The review has ended (the job is ${state}): keywords can be looked at, not changed.`);
      if (bulk) {
        bulk.hidden = true;
      }
    }
  };

  const post = async (url, fields) => {
    const body = new URLSearchParams();
    for (const [key, value] of fields) {
      body.append(key, value);
    }
    let answer;
    try {
      answer = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        body,
      });
    } catch (error) {
      say("The server did not answer: nothing was changed; try again.", true);
      return null;
    }
    const data = await answer.json().catch(() => ({ error: `the server answered ${answer.status}` }));
    if (!answer.ok) {
      say(data.error || `the server answered ${answer.status}`, true);
      return null;
    }
    apply(data.photos);
    closed(data.state);
    return data;
  };

  // Actions are sent one after the other, in the order the keys were pressed; the place
  // moves on at once (the next key acts on the next photo while the answer is on its way).
  let queue = Promise.resolve();
  const enqueue = (action) => {
    const next = queue.then(action, action);
    queue = next.catch(() => null);
    return next;
  };

  const chosen = () => (selected.size ? [...selected] : photos.length ? [photos[current].id] : []);

  const approve = () => {
    const ids = chosen();
    if (!open || !ids.length) {
      return;
    }
    if (!selected.size) {
      moveTo(current + 1);
    }
    enqueue(async () => {
      if (await post(`/jobs/${job}/approve`, ids.map((id) => ["photo", String(id)]))) {
        say(`Approved ${ids.length === 1 ? "1 photo" : `${ids.length} photos`}.`);
      }
    });
  };

  const editSelection = (action, word) => {
    const ids = chosen();
    if (!open || !ids.length || !word.trim()) {
      return Promise.resolve(null);
    }
    return enqueue(async () => {
      const data = await post(`/jobs/${job}/review/bulk`, [
        ["action", action],
        ["word", word.trim()],
        ...ids.map((id) => ["photo", String(id)]),
      ]);
      if (data) {
        const done = data.photos.length;
        const what = action === "add" ? "added to" : "removed from";
        const skipped = data.skipped.length
          ? `; ${data.skipped.length} left as they were (${data.skipped[0]})`
          : "";
        say(`“${word.trim()}” ${what} ${done === 1 ? "1 photo" : `${done} photos`}${skipped}.`);
      }
      return data;
    });
  };

  const loupeData = async (id) => {
    if (!details.has(id)) {
      const answer = await fetch(`/jobs/${job}/review/photos/${id}`, { credentials: "same-origin" });
      if (!answer.ok) {
        throw new Error(`the server answered ${answer.status}`);
      }
      details.set(id, await answer.json());
      if (details.size > KEPT_DETAILS) {
        details.delete(details.keys().next().value); // the longest kept: memory stays bounded
      }
    }
    return details.get(id);
  };

  // In the loupe a number names a keyword the reviewer sees: it acts on the photo the loupe
  // shows, not on the next one whose keywords are still on their way.
  const reject = (number) => {
    if (!open || !photos.length) {
      return;
    }
    if (loupe && !loupe.dataset.shown) {
      say("The photo is still loading: press the number again once its keywords show.", true);
      return;
    }
    const id = loupe ? Number(loupe.dataset.shown) : photos[current].id;
    enqueue(async () => {
      const data = await loupeData(id);
      const word = data.keywords[number - 1];
      if (word === undefined) {
        say(`This photo has no keyword ${number}.`, true);
      } else if (await post(`/jobs/${job}/photos/${id}/keywords`, [["remove", word]])) {
        say(`“${word}” removed from ${data.path}.`);
      }
    });
  };

  const addWord = (id, word, path) =>
    enqueue(async () => {
      const data = await post(`/jobs/${job}/photos/${id}/keywords`, [["add", word]]);
      if (data) {
        say(`“${word}” added to ${path}.`);
      }
      return data;
    });

  const poll = async () => {
    if (!document.hidden) {
      try {
        const url = new URL(grid.dataset.changes, window.location.href);
        url.searchParams.set("since", stamp);
        const answer = await fetch(url, { credentials: "same-origin" });
        if (answer.ok) {
          const data = await answer.json();
          stamp = data.stamp;
          apply(data.photos);
          closed(data.state);
          grid.dataset.polled = String(Date.now());
        }
      } catch (error) {
        // The server restarts or the network blinks: the next turn tries again.
      }
    }
    window.setTimeout(poll, POLL_MS);
  };

  // ---- the loupe ------------------------------------------------------------------

  const showLoupe = async () => {
    if (!photos.length) {
      return;
    }
    const photo = photos[current];
    if (!loupe) {
      loupe = document.createElement("section");
      loupe.className = "loupe photo-review";
      loupe.id = "loupe-live";
      loupe.setAttribute("role", "dialog");
      loupe.setAttribute("aria-label", "loupe");
      document.body.appendChild(loupe);
      document.body.classList.add("in-loupe");
    }
    loupe.dataset.photo = String(photo.id);
    loupe.setAttribute("aria-busy", String(loupe.dataset.shown !== String(photo.id)));
    let data;
    try {
      data = await loupeData(photo.id);
    } catch (error) {
      say(`This photo cannot be shown: ${error.message}`, true);
      return;
    }
    if (!loupe || loupe.dataset.photo !== String(photo.id)) {
      return; // moved on meanwhile
    }
    loupe.setAttribute("aria-busy", "false");
    const [frame, side] = loupeParts(data, {
      open,
      job,
      csrf,
      where: `${current + 1} of ${photos.length} · Esc closes`,
      reject,
      approve,
      add: (word) => addWord(photo.id, word, data.path),
    });
    // Redrawn under the reviewer's hands (another reviewer's change came in): what they were
    // typing stays, and where.
    const typed = loupe.querySelector("form.add input[name=add]");
    const keep = typed && document.activeElement === typed && loupe.dataset.shown === String(photo.id);
    loupe.replaceChildren(frame, side);
    loupe.dataset.shown = String(photo.id);
    if (keep) {
      const field = side.querySelector("form.add input[name=add]");
      if (field) {
        field.value = typed.value;
        field.focus();
      }
    }
    loupe.classList.toggle("flagged", data.flagged);
    const next = photos[current + 1];
    if (next && next.v) {
      loupeData(next.id).then((ahead) => {
        if (ahead.image) {
          new Image().src = ahead.image; // ready when the reviewer moves on
        }
      }, () => {});
    }
  };

  const closeLoupe = () => {
    if (loupe) {
      loupe.remove();
      loupe = null;
      document.body.classList.remove("in-loupe");
      reveal(current);
    }
  };

  // ---- keys and the mouse --------------------------------------------------------

  const askWord = (action) => {
    if (!open) {
      return;
    }
    if (action === "add" && !selected.size) {
      if (!loupe) {
        showLoupe().then(() => loupe && loupe.querySelector("form.add input[name=add]")?.focus());
      } else {
        loupe.querySelector("form.add input[name=add]")?.focus();
      }
      return;
    }
    const field = bulk.querySelector("input[name=word]");
    field.dataset.action = action;
    field.placeholder = action === "add" ? "keyword to add, then Enter" : "keyword to remove, then Enter";
    field.focus();
  };

  const clearSelection = () => {
    selected.clear();
    showSelection();
    redrawAll();
  };

  const commands = {
    leaveField: (_, event) => event.target.blur(),
    selectAll: () => {
      for (const photo of photos) {
        selected.add(photo.id);
      }
      showSelection();
      redrawAll();
    },
    move: ({ by, extend }) => moveTo(current + by, { extend }),
    jump: ({ to, extend }) => moveTo(to === "first" ? 0 : photos.length - 1, { extend }),
    loupe: () => (loupe ? closeLoupe() : showLoupe()),
    escape: () => (loupe ? closeLoupe() : selected.size && clearSelection()),
    approve,
    tick: () => toggle(current),
    reject: ({ number }) => reject(number),
    ask: ({ action }) => askWord(action),
    help: () => {
      const keys = document.getElementById("keys");
      keys.open = !keys.open;
      keys.scrollIntoView();
    },
  };

  document.addEventListener("keydown", (event) => {
    if (!photos.length) {
      return;
    }
    const wanted = command(event, { inLoupe: Boolean(loupe), columns });
    if (wanted) {
      if (wanted.name !== "leaveField") {
        event.preventDefault();
      }
      commands[wanted.name](wanted, event);
    }
  });

  grid.addEventListener("click", (event) => {
    const target = event.target.closest(".tile[data-index]");
    if (!target) {
      return;
    }
    event.preventDefault();
    const index = Number(target.dataset.index);
    if (event.shiftKey) {
      moveTo(index, { extend: true });
    } else if (event.ctrlKey || event.metaKey) {
      current = index;
      toggle(index);
    } else {
      moveTo(index);
      showLoupe();
    }
  });

  if (bulk) {
    const field = bulk.querySelector("input[name=word]");
    const run = async (action) => {
      if (action === "approve") {
        approve();
      } else if (await editSelection(action, field.value)) {
        field.value = "";
        field.blur();
        delete field.dataset.action;
      }
    };
    bulk.addEventListener("submit", (event) => {
      event.preventDefault();
      run(event.submitter ? event.submitter.value : field.dataset.action || "add");
    });
    // Enter in the field does what T (add) or R (remove) asked for.
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        run(field.dataset.action || "add");
      }
    });
  }

  window.addEventListener("scroll", soon, { passive: true });
  window.addEventListener("resize", () => window.requestAnimationFrame(layout));

  // ---- start ----------------------------------------------------------------------

  const start = async () => {
    let data;
    try {
      const answer = await fetch(grid.dataset.index, { credentials: "same-origin" });
      if (!answer.ok) {
        throw new Error(`the server answered ${answer.status}`);
      }
      data = await answer.json();
    } catch (error) {
      say(`The grid stays paged: ${error.message}.`, true);
      return;
    }
    sections = data.sections;
    counts = data.counts;
    counts.held = counts.held || 0;
    open = data.open;
    photos = data.photos.map(([id, section, name, d, f, k, v]) => ({ id, section, name, d, f, k, v }));
    photos.forEach((photo, index) => where.set(photo.id, index));
    let saved = [];
    try {
      saved = JSON.parse(window.sessionStorage.getItem(`review:${job}`) || "[]");
    } catch (error) {
      saved = [];
    }
    for (const id of saved) {
      if (where.has(id)) {
        selected.add(id);
      }
    }
    const wanted = Number((window.location.hash.match(/^#p(\d+)$/) || [])[1] || grid.dataset.current);
    current = where.get(wanted) ?? 0;
    anchor = current;
    document.getElementById("loupe")?.remove(); // the page's own loupe: the live one replaces it
    for (const old of document.querySelectorAll(".grid-pages")) {
      old.hidden = true;
    }
    if (photos.length) {
      grid.replaceChildren(); // the paged tiles: the live grid draws what is on screen
      grid.classList.add("live");
    }
    showSelection();
    layout();
    if (wanted && where.has(wanted)) {
      reveal(current);
      if (grid.dataset.current) {
        showLoupe();
      }
    }
    stamp = data.stamp || stamp;
    grid.dataset.count = String(photos.length);
    grid.dataset.readyAt = String(Math.round(window.performance.now()));
    grid.dataset.ready = "1";
    window.setTimeout(poll, POLL_MS);
  };
  start();
})();
