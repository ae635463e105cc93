// Builds <package name>.wasm from app.js with componentize-js, against the WIT in $WIT_DIR
// (default: ./wit, as `wafer new --lang js` lays it out; the example in wafer's repository uses
// ../../wit). Run it with `npm run build`.
//
// componentize-js 0.23 embeds a StarlingMonkey engine whose `fetch` event handler exports
// wasi:http/incoming-handler@0.2.10, so the WIT handed to it must say 0.2.10: the build copies
// the WIT (0.2.12) into build/wit with the package versions, and the `@since` gates of the
// few additions after 0.2.10, rewritten to 0.2.10. wafer accepts any 0.2.x.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const source = process.env.WIT_DIR ?? "wit";
const out = `${process.env.npm_package_name ?? "function"}.wasm`;
const wit = "build/wit";
const as0210 = (text) => text.replace(/0\.2\.1[0-2]\b/g, "0.2.10");
rmSync("build", { recursive: true, force: true });
mkdirSync(join(wit, "deps"), { recursive: true });
for (const file of readdirSync(join(source, "deps"))) {
  const text = readFileSync(join(source, "deps", file), "utf8");
  writeFileSync(join(wit, "deps", file), as0210(text));
}
writeFileSync(join(wit, "world.wit"), as0210(readFileSync(join(source, "world.wit"), "utf8")));

const { component } = await componentize({
  sourcePath: "app.js",
  witPath: wit,
  worldName: "function",
});
writeFileSync(out, component);
console.log(`built ${out} (${component.length} bytes)`);
