// The longest functions under src/ (lines from the first to the last line of each function, method or arrow
// function, tests excluded): `node scripts/longest-functions.mjs [N]`. Used to measure refactors.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

const root = new URL("../src/", import.meta.url).pathname;
const top = Number(process.argv[2] ?? 10);
const files = (dir) => readdirSync(dir).flatMap((n) => {
  const p = join(dir, n);
  return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") && !p.endsWith(".test.ts") ? [p] : [];
});
const rows = [];
for (const file of files(root)) {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const visit = (node, owner) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const line = (pos) => sf.getLineAndCharacterOfPosition(pos).line + 1;
      const start = line(node.getStart(sf)), end = line(node.end);
      const name = node.name?.getText(sf) ?? owner ?? "(anonymous)";
      rows.push({ lines: end - start + 1, where: `${relative(root, file)}:${start}`, name });
    }
    const nextOwner = ts.isVariableDeclaration(node) || ts.isPropertyAssignment(node) ? node.name.getText(sf) : owner;
    ts.forEachChild(node, (c) => visit(c, nextOwner));
  };
  visit(sf);
}
rows.sort((a, b) => b.lines - a.lines);
for (const r of rows.slice(0, top)) console.log(`${String(r.lines).padStart(4)}  ${r.name}  ${r.where}`);
