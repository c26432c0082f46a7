/**
 * Every extension of a page, one line each: what registers where is read here, not found by polling the
 * DOM. An extension is a module exporting a function of its page's context.
 */
import { annotateHooks } from "./annotate/context";
import { historyPanel } from "./annotate/history";
import { livePanel } from "./annotate/live";
import { exportPanel } from "./export-panel";
import { showGuide } from "./guide";
import { decorateImageGrid, setupPredictions } from "./overlays";
import { modelsSections } from "./pages/models";
import { imageGridHooks, projectSections } from "./pages/project";
import { setGuideOpener } from "./ui";

annotateHooks.register("predictions", setupPredictions);
annotateHooks.register("history", historyPanel);
annotateHooks.register("live training", livePanel);
imageGridHooks.register("prediction thumbnails", decorateImageGrid);
setGuideOpener(showGuide);
projectSections.register("export", (ctx) => exportPanel(ctx.projectId, null));
modelsSections.register("export", (ctx) => exportPanel(ctx.projectId, ctx.versions));
