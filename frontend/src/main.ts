/** Entry point: styles, then every page module (each registers its routes), the pages' extensions, then the router. */
import "./style.css";
import { setNotFound, startRouter } from "./router";
import { h, renderNav } from "./ui";
import "./pages/projects";
import "./pages/project";
import "./pages/annotate";
import "./pages/training";
import "./pages/models";
import "./extensions";

setNotFound((root) => {
  renderNav();
  root.append(h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "/" }, "Back to projects")));
});
startRouter();
