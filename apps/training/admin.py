"""Admin for the PI: model versions (lineage, key metrics, activate / compare / download) and runs."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import FileResponse, HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import services
from .models import MetricScore, ModelVersion, RunStatus, ScoreMethod, TrainingRun

#: Metrics shown as columns in the version list (aggregates over the scored split, image null).
KEY_METRICS = ("f1_iou50", "mean_iou", "pixel_error", "adapted_rand_error")


def _aggregates(version: ModelVersion) -> dict[str, float]:
    return {s.name: s.value for s in version.metric_scores.all() if s.image_id is None and s.method == ScoreMethod.UNET}


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "number", "parent", "run_status", "key_metrics", "is_active", "created_at")
    list_filter = ("is_active", "project")
    search_fields = ("name", "project__name")
    list_select_related = ("project", "parent", "run")
    readonly_fields = ("lineage", "run", "parent", "scores_table", "created_at", "created_by")
    actions = ("activate", "compare", "download")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("metric_scores")

    @admin.display(description="run status")
    def run_status(self, obj: ModelVersion) -> str:
        return obj.run.status if obj.run_id else "uploaded"

    @admin.display(description="key metrics")
    def key_metrics(self, obj: ModelVersion) -> str:
        agg = _aggregates(obj)
        shown = [(k, f"{agg[k]:.3f}") for k in KEY_METRICS if k in agg]
        return format_html_join(", ", "{}={}", shown) if shown else "-"

    @admin.display(description="lineage (parent chain)")
    def lineage(self, obj: ModelVersion) -> str:
        chain, seen, node = [obj], {obj.pk}, obj.parent
        while node is not None and node.pk not in seen:
            chain.append(node)
            seen.add(node.pk)
            node = node.parent
        return format_html_join(
            " ← ", '<a href="{}">v{}</a>',
            ((reverse("admin:training_modelversion_change", args=[v.pk]), v.number) for v in chain),
        )

    @admin.display(description="metric scores")
    def scores_table(self, obj: ModelVersion) -> str:
        rows = obj.metric_scores.select_related("image").order_by("image_id", "name", "method")
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{:.4f}</td></tr>",
            ((s.image.original_filename if s.image_id else "(all)", s.split, s.name, s.method, s.value) for s in rows),
        )
        return format_html("<table><tr><th>image</th><th>split</th><th>metric</th><th>value</th></tr>{}</table>", body)

    @admin.action(description="Activate the selected version (one per project)")
    def activate(self, request: HttpRequest, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return None
        version = services.activate_version(queryset.get())
        self.message_user(request, f"{version} is now the active version of {version.project}.")
        return None

    @admin.action(description="Compare the selected versions (metrics side by side)")
    def compare(self, request: HttpRequest, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:training_modelversion_compare')}?ids={ids}")

    @admin.action(description="Download the checkpoint of the selected version")
    def download(self, request: HttpRequest, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to download.", messages.WARNING)
            return None
        version = queryset.get()
        return FileResponse(version.checkpoint.open("rb"), as_attachment=True,
                            filename=f"{version.project}-v{version.number}.pt".replace(" ", "_"))

    def get_urls(self):
        extra = [path("compare/", self.admin_site.admin_view(self.compare_view), name="training_modelversion_compare")]
        return extra + super().get_urls()

    def compare_view(self, request: HttpRequest):
        ids = [int(x) for x in request.GET.get("ids", "").split(",") if x.strip().isdigit()]
        versions = list(
            ModelVersion.objects.filter(pk__in=ids).select_related("project", "parent")
            .prefetch_related("metric_scores")
            .order_by("project_id", "number")
        )
        per_version = [_aggregates(v) for v in versions]
        names = sorted({n for agg in per_version for n in agg})
        rows = [(name, [agg.get(name) for agg in per_version]) for name in names]
        context = {**self.admin_site.each_context(request), "title": "Compare model versions",
                   "versions": versions, "rows": rows, "opts": self.model._meta}
        return TemplateResponse(request, "admin/training/compare.html", context)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "status", "progress_pct", "step", "total_steps", "short_error", "worker",
                    "attempts", "heartbeat_at", "created_at")
    list_filter = ("status", "project")
    list_select_related = ("project",)
    readonly_fields = ("step", "total_steps", "progress", "loss_curve", "elapsed_seconds", "eta_seconds", "worker",
                       "attempts", "heartbeat_at", "started_at", "finished_at", "error", "message")
    actions = ("cancel",)

    @admin.display(description="progress")
    def progress_pct(self, obj: TrainingRun) -> str:
        return f"{100 * obj.progress:.0f} %"

    @admin.display(description="error")
    def short_error(self, obj: TrainingRun) -> str:
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request: HttpRequest, queryset):
        n = 0
        for run in queryset.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]):
            services.cancel_run(run)
            n += 1
        self.message_user(request, f"Cancel requested for {n} run(s).")


@admin.register(MetricScore)
class MetricScoreAdmin(admin.ModelAdmin):
    list_display = ("model_version", "image", "split", "name", "value", "created_at")
    list_filter = ("name", "split")
    list_select_related = ("model_version__project", "image")
    search_fields = ("name", "model_version__project__name")
