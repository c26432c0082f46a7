/** Projects page: the list, and a form to create one (name + classes with colours). */
import { api, getAll, type Project } from "../api";
import { classColor } from "../palette";
import { registerRoute, navigate } from "../router";
import { STEPS } from "../guide";
import { dialog, errorBlock, h, openModal, renderNav, showError } from "../ui";

async function renderProjects(root: HTMLElement): Promise<void> {
  renderNav();
  root.append(h("h1", {}, "Projects"));
  const list = h("div", { class: "card-grid", "data-testid": "project-list" }, "Loading…");
  const staff = h("div", {});
  root.append(createForm(), list, staff);
  void api.get<{ is_staff: boolean }>("/me/").then((me) => { if (me.is_staff) staff.replaceChildren(accountsPanel()); }).catch(() => undefined);
  try {
    const projects = await getAll<Project>("/projects/");
    list.replaceChildren();
    if (!projects.length) list.append(emptyStart());
    for (const p of projects) {
      list.append(
        h("a", { class: "card", href: `/projects/${p.id}`, "data-testid": `project-${p.id}` },
          h("h3", {}, p.name),
          h("div", { class: "swatches" }, ...(p.classes ?? []).map((c) => h("span", { class: "swatch", title: c.name, style: { background: c.color } }))),
          h("div", { class: "muted" }, [p.my_role, p.image_count !== undefined ? `${p.image_count} images` : null].filter(Boolean).join(" · ")),
        ),
      );
    }
  } catch (err) {
    list.replaceChildren(errorBlock(err, "Could not load projects"));
  }
}

/** What an empty Projects page says: the loop, step by step (the guide's steps). */
function emptyStart(): HTMLElement {
  return h("div", { class: "panel empty-start", "data-testid": "projects-empty" },
    h("h2", {}, "No projects yet. Here is the way through:"),
    h("ol", {}, ...STEPS.map(([title, text]) => h("li", {}, h("strong", {}, title), ": ", text))),
    h("p", { class: "muted" }, "Start with the New project form above. You can open these steps again from Getting started at the top right."));
}

/** Staff only: create an account with a one-time password (shown once; changed at the first sign-in). */
function accountsPanel(): HTMLElement {
  const open = () => {
    const username = h("input", { type: "text", required: true, autocomplete: "off", "data-testid": "account-username" });
    const email = h("input", { type: "email", autocomplete: "off", "data-testid": "account-email" });
    const form = h("form", { "data-testid": "account-form" },
      h("label", {}, "Username ", username), " ", h("label", {}, "E-mail (optional) ", email),
      h("div", { class: "modal-buttons" },
        h("button", { type: "button", onclick: () => m.close() }, "Cancel"),
        h("button", { type: "submit", class: "primary", "data-testid": "account-create" }, "Create")));
    const m = openModal("Create an account", form, { onDismiss: () => undefined });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const made = await api.post<{ username: string; password: string }>("/accounts/", { username: username.value.trim(), email: email.value.trim() });
        m.close();
        await dialog(`Account ${made.username} created`, h("div", {},
          h("p", {}, "Give this one-time password to its owner now: it is shown only once. They choose their own at the first sign-in."),
          h("p", {}, h("code", { class: "one-time-password", "data-testid": "one-time-password" }, made.password))),
        [{ label: "I have noted it", value: "close", primary: true, testid: "account-done" }]);
      } catch (err) {
        showError(err, "Could not create the account");
      }
    });
  };
  return h("section", { class: "panel", "data-testid": "accounts-panel" }, h("h2", {}, "Accounts (staff)"),
    h("p", { class: "muted" }, "New lab members need an account before an owner can invite them to a project."),
    h("button", { "data-testid": "account-new", onclick: open }, "Create an account"));
}

/** The "new project" form; class rows can be added/removed; background (index 1) is implicit. */
function createForm(): HTMLElement {
  const rows = h("div", { class: "class-rows" });
  const addRow = (name = "", color = classColor(rows.children.length)) => {
    const row = h("div", { class: "class-row" },
      h("input", { type: "text", placeholder: "class name", value: name, "data-testid": "class-name", required: true }),
      h("input", { type: "color", value: color, "data-testid": "class-color" }),
      h("button", { type: "button", class: "icon", title: "Remove", onclick: () => row.remove() }, "×"),
    );
    rows.append(row);
  };
  addRow("nucleus");
  const name = h("input", { type: "text", name: "name", placeholder: "Project name", required: true, "data-testid": "project-name" });
  const form = h("form", { class: "panel", "data-testid": "create-project" },
    h("h2", {}, "New project"),
    h("label", {}, "Name ", name),
    h("div", { class: "muted" }, "Classes (1 = background is added automatically):"),
    rows,
    h("button", { type: "button", onclick: () => addRow() }, "+ class"),
    " ",
    h("button", { type: "submit", class: "primary", "data-testid": "create-project-submit" }, "Create project"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const classes = [...rows.querySelectorAll(".class-row")].map((r) => ({
      name: (r.querySelector('[data-testid="class-name"]') as HTMLInputElement).value.trim(),
      color: (r.querySelector('[data-testid="class-color"]') as HTMLInputElement).value,
    })).filter((c) => c.name);
    try {
      const p = await api.post<Project>("/projects/", { name: name.value.trim(), classes });
      navigate(`/projects/${p.id}`);
    } catch (err) {
      showError(err, "Could not create the project");
    }
  });
  return form;
}

registerRoute("/", renderProjects);
registerRoute("/projects", renderProjects);
