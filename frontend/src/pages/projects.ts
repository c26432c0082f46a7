/** Projects page: the list, and a form to create one (name + classes with colours). */
import { api, getAll, type Project } from "../api";
import { classColor } from "../palette";
import { registerRoute, navigate } from "../router";
import { errorBlock, h, renderNav, showError } from "../ui";

async function renderProjects(root: HTMLElement): Promise<void> {
  renderNav();
  root.append(h("h1", {}, "Projects"));
  const list = h("div", { class: "card-grid", "data-testid": "project-list" }, "Loading…");
  root.append(createForm(), list);
  try {
    const projects = await getAll<Project>("/projects/");
    list.replaceChildren();
    if (!projects.length) list.append(h("p", { class: "muted" }, "No projects yet: create one above."));
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
