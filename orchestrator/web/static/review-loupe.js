// The loupe's content: the photo large, and beside it its keywords numbered (each with its
// remove button), a form to add one of its suggestions, the suggestions and categories with
// their confidence, moderation and the decision. Built from the page's JSON with textContent
// only (nothing the server sent is ever parsed as HTML).

const element = (tag, className, text) => {
  const made = document.createElement(tag);
  if (className) {
    made.className = className;
  }
  if (text !== undefined) {
    made.textContent = text;
  }
  return made;
};

const scored = (pairs) => pairs.map(([word, confidence]) => `${word} ${confidence}%`).join(", ");

// The add form is a real form too: posted by the browser itself (the page's script stopped),
// the server answers as it does without scripts.
const addForm = (data, { job, csrf, add }) => {
  const form = element("form", "add");
  form.method = "post";
  form.action = `/jobs/${job}/photos/${data.id}/keywords`;
  for (const [name, value] of [["csrf", csrf], ["back", `photo=${data.id}`]]) {
    const hidden = element("input");
    hidden.type = "hidden";
    hidden.name = name;
    hidden.value = value;
    form.appendChild(hidden);
  }
  const field = element("input");
  field.type = "text";
  field.name = "add";
  field.placeholder = "add one of the suggestions (T)";
  field.autocomplete = "off";
  field.setAttribute("aria-label", "add a keyword");
  const list = element("datalist");
  list.id = `loupe-suggestions-${data.id}`;
  for (const word of data.addable) {
    const option = element("option");
    option.value = word;
    list.appendChild(option);
  }
  field.setAttribute("list", list.id);
  const button = element("button", "", "Add");
  button.type = "submit";
  form.append(field, list, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const word = field.value.trim();
    if (word) {
      field.blur();
      add(word);
    }
  });
  return form;
};

// [the image's frame, the side panel] for the photo `data` (the page's /review/photos answer);
// `open`: the job takes edits; `reject(n)`, `approve()`, `add(word)`: the page's actions.
export const loupeParts = (data, { open, job, csrf, where, reject, approve, add }) => {
  const frame = element("div", "loupe-image");
  if (data.image) {
    const image = element("img");
    image.alt = "";
    image.src = data.image;
    frame.appendChild(image);
  } else {
    frame.appendChild(element("div", "noimage", "no JPEG"));
  }
  const side = element("div", "loupe-side");
  side.appendChild(element("h2", "name", data.path));
  const decision = element("p", "decision");
  decision.appendChild(
    data.approved === true
      ? element("span", "approved", "approved")
      : data.approved === false
        ? element("span", "held", "held back")
        : element("span", "muted", "not decided"),
  );
  decision.appendChild(document.createTextNode(` · keywords ${data.source} `));
  if (data.flagged) {
    decision.appendChild(element("span", "flag", "flagged by moderation: needs its own approval"));
  }
  side.appendChild(decision);
  const chips = element("ol", "chips");
  data.keywords.forEach((word, number) => {
    const chip = element("li", "chip");
    if (number < 9) {
      chip.appendChild(element("kbd", "", String(number + 1)));
    }
    chip.appendChild(element("span", "word", word));
    if (open) {
      const remove = element("button", "remove", "×");
      remove.type = "button";
      remove.title = `remove (${number + 1})`;
      remove.setAttribute("aria-label", `remove ${word}`);
      remove.addEventListener("click", () => reject(number + 1));
      chip.appendChild(remove);
    }
    chips.appendChild(chip);
  });
  side.appendChild(chips);
  if (open) {
    side.appendChild(addForm(data, { job, csrf, add }));
  }
  side.appendChild(element("p", "suggestions muted", `Suggestions: ${scored(data.suggestions)}`));
  if (data.categories.length) {
    side.appendChild(element("p", "categories muted", `Categories: ${scored(data.categories)}`));
  }
  if (open && data.approved !== true) {
    const button = element("button", "approve approve-photo", "Approve this photo (A)");
    button.type = "button";
    button.addEventListener("click", approve);
    side.appendChild(button);
  }
  side.appendChild(element("p", "muted", where));
  return [frame, side];
};
