/**
 * A training run's rounds (self-training adds rounds): the progress line, the loss chart's round markers
 * and the validation scores per round, from the run's `rounds` (see apps/training/pipeline.RoundProgress).
 */
export interface RunRound {
  round: number;
  of: number;
  start_step: number;
  end_step: number | null;
  validation: { split: string; images: number; scores: Record<string, number> } | null;
}

export interface RunProgress {
  step: number;
  total_steps: number;
  rounds?: RunRound[];
  config?: Record<string, unknown>;
}

/** "round 2 of 2 · step 150 of 300 (150 steps a round)", or "step 40 of 100" for one round. */
export function progressText(run: RunProgress): string {
  const steps = `step ${run.step} of ${run.total_steps || "?"}`;
  const rounds = run.rounds ?? [];
  const current = rounds[rounds.length - 1];
  if (!current || current.of <= 1) return steps;
  const per = Number(run.config?.steps) || Math.round(run.total_steps / current.of);
  return `round ${current.round} of ${current.of} · ${steps} (${per} steps a round)`;
}

/** Vertical markers on the loss chart: where each round after the first starts. */
export function roundMarkers(rounds: RunRound[] | undefined): Array<[number, string]> {
  return (rounds ?? []).filter((r) => r.round > 1).map((r): [number, string] => [r.start_step, `round ${r.round}`]);
}

/** Metrics plotted per round, the first one a run has is shown. */
export const ROUND_METRICS: Array<[string, string]> = [
  ["f1_iou50", "F1 @ IoU 0.5"],
  ["iou_fg", "foreground IoU"],
  ["mean_iou", "mean IoU"],
  ["pixel_error", "pixel error"],
];

/** [metric, name, points [end step of the round, score]] of the first metric scored after a round (null: none). */
export function validationSeries(rounds: RunRound[] | undefined): [string, string, Array<[number, number]>] | null {
  for (const [key, name] of ROUND_METRICS) {
    const pts = (rounds ?? [])
      .filter((r) => r.validation && r.validation.scores[key] !== undefined && r.end_step !== null)
      .map((r): [number, number] => [r.end_step as number, r.validation!.scores[key]]);
    if (pts.length) return [key, name, pts];
  }
  return null;
}
