/**
 * Every extension of a page, one line each: what registers where is read here, not found by polling the
 * DOM. An extension is a module exporting a function of its page's context.
 */
import { annotateHooks } from "./annotate/context";
import { exportPanel } from "./export-panel";
import { modelComparisonSection } from "./model-compare";
import { decorateImageGrid, setupPredictions } from "./overlays";
import { modelsSections } from "./pages/models";
import { imageGridHooks, projectSections } from "./pages/project";

annotateHooks.register("predictions", setupPredictions);
imageGridHooks.register("prediction thumbnails", decorateImageGrid);
modelsSections.register("comparison with the parent", (ctx) => modelComparisonSection(ctx.projectId));
projectSections.register("export", (ctx) => exportPanel(ctx.projectId, null));
modelsSections.register("export", (ctx) => exportPanel(ctx.projectId, ctx.versions));
