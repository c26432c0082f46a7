/** The hook registry: registration order, replacement by name, failures isolated, cleanups collected. */
import { describe, expect, it } from "vitest";
import { Hook, runWithCleanup } from "./hooks";

describe("hook registry", () => {
  it("runs entries in registration order with the page's context and returns their results", () => {
    const hook = new Hook<{ n: number }, number>("test");
    hook.register("double", (c) => c.n * 2);
    hook.register("square", (c) => c.n * c.n);
    expect(hook.names()).toEqual(["double", "square"]);
    expect(hook.run({ n: 3 }, () => undefined)).toEqual([6, 9]);
  });

  it("registering a name again replaces the entry in its place", () => {
    const hook = new Hook<null, string>("test");
    hook.register("a", () => "a1");
    hook.register("b", () => "b");
    hook.register("a", () => "a2");
    expect(hook.run(null, () => undefined)).toEqual(["a2", "b"]);
  });

  it("a failing entry is reported by name and the others still run", () => {
    const hook = new Hook<null, string>("test");
    const errors: string[] = [];
    hook.register("broken", () => {
      throw new Error("boom");
    });
    hook.register("fine", () => "ok");
    expect(hook.run(null, (err, name) => errors.push(`${name}: ${(err as Error).message}`))).toEqual([undefined, "ok"]);
    expect(errors).toEqual(["broken: boom"]);
  });

  it("runWithCleanup gathers the entries' cleanups into one", () => {
    const hook = new Hook<string[]>("test");
    hook.register("with cleanup", (log) => () => void log.push("cleaned"));
    hook.register("without", (log) => void log.push("ran"));
    const log: string[] = [];
    const cleanup = runWithCleanup(hook, log, () => undefined);
    expect(log).toEqual(["ran"]);
    cleanup();
    expect(log).toEqual(["ran", "cleaned"]);
  });
});
