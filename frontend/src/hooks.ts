/**
 * Explicit extension points. A page owns a {@link Hook} and runs it with its context once its parts
 * exist; extensions register in `src/extensions.ts` (one line each). Nothing looks for elements in the
 * DOM, polls or observes it to find where to attach.
 */
export type Cleanup = () => void;

interface Entry<Ctx, R> {
  name: string;
  fn: (ctx: Ctx) => R;
}

export class Hook<Ctx, R = void | Cleanup> {
  private readonly entries: Array<Entry<Ctx, R>> = [];

  constructor(readonly name: string) {}

  /** Add `fn` under `name`; registering a name again replaces the earlier entry (keeps its place). */
  register(name: string, fn: (ctx: Ctx) => R): void {
    const i = this.entries.findIndex((e) => e.name === name);
    if (i >= 0) this.entries[i] = { name, fn };
    else this.entries.push({ name, fn });
  }

  names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /**
   * Call every entry in registration order. One that throws is reported to `onError` and skipped, so a
   * broken extension never breaks the page. Returns the entries' results (undefined for a failed one).
   */
  run(ctx: Ctx, onError: (err: unknown, name: string) => void): Array<R | undefined> {
    return this.entries.map((e) => {
      try {
        return e.fn(ctx);
      } catch (err) {
        onError(err, e.name);
        return undefined;
      }
    });
  }
}

/** Run a hook whose entries may return a cleanup; returns one cleanup for all of them. */
export function runWithCleanup<Ctx>(hook: Hook<Ctx>, ctx: Ctx, onError: (err: unknown, name: string) => void): Cleanup {
  const cleanups = hook.run(ctx, onError).filter((c): c is Cleanup => typeof c === "function");
  return () => cleanups.forEach((c) => {
    try {
      c();
    } catch (err) {
      onError(err, hook.name);
    }
  });
}
